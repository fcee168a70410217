"""Data: example-image loading (model-directory layouts, folders) and the TrojAI-like synthetic generator."""
