"""The adaptive-attack study (issue 19 §2; EX-RAY paper §4.5, Table 7):
``exray study adaptive SPEC --out DIR``."""

from exray.studies.adaptive.report import write_report
from exray.studies.adaptive.runner import run_adaptive_study, scan_zoo, table7
from exray.studies.adaptive.spec import AdaptiveStudySpec, load_spec, parse_spec

__all__ = [
    "AdaptiveStudySpec",
    "load_spec",
    "parse_spec",
    "run_adaptive_study",
    "scan_zoo",
    "table7",
    "write_report",
]
