"""The SDRM study (issue 6; spec §6): regularly trained vs SDRM backdoored models — accuracy, attack
success, per-level distances and the difference-based detectors. ``exray sdrm study SPEC --out DIR``."""

from exray.studies.sdrm.report import write_report
from exray.studies.sdrm.runner import run_study
from exray.studies.sdrm.selection import select_runs
from exray.studies.sdrm.spec import StudySpec, load_spec, parse_spec

__all__ = ["StudySpec", "load_spec", "parse_spec", "run_study", "select_runs", "write_report"]
