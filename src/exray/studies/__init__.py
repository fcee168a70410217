"""Studies: reproducible experiments driven by a validated spec file, resumable, with tables and plots."""
