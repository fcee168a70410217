"""The repair study (issue 19 §2; EX-RAY paper §4.6, Table 8): ``exray study repair SPEC --out DIR``."""

from exray.studies.repair.report import write_report
from exray.studies.repair.runner import repair_one, run_repair_study, table8
from exray.studies.repair.spec import RepairStudySpec, load_spec, parse_spec

__all__ = [
    "RepairStudySpec",
    "load_spec",
    "parse_spec",
    "repair_one",
    "run_repair_study",
    "table8",
    "write_report",
]
