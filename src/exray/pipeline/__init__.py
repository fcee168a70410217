"""The scan pipeline: scanner → triggers → EX-RAY → model probability; one model or many (design §1)."""

from exray.pipeline.batch import read_results, scan_many, scan_model_dir
from exray.pipeline.budget import ModelBudget
from exray.pipeline.calibration import Calibration, fit
from exray.pipeline.options import ScanOptions
from exray.pipeline.scan import ScanResult, TriggerReport, scan
from exray.pipeline.settings import ScanSettings

__all__ = [
    "Calibration",
    "ModelBudget",
    "ScanOptions",
    "ScanResult",
    "ScanSettings",
    "TriggerReport",
    "fit",
    "read_results",
    "scan",
    "scan_many",
    "scan_model_dir",
]
