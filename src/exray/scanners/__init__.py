"""Upstream scanners: trigger inversion with ABS (patch + filter) and Neural Cleanse (design §1; spec §2, §3).

``get_scanner(name, **options).scan(model, examples)`` returns a :class:`ScannerResult` whose
:class:`FoundTrigger` objects EX-RAY refines. All scanners share one batched inversion loop
(:mod:`exray.scanners.inversion`) and specialise its parameterisation, loss and stopping rule.
"""

from exray.metrics.robust import mad_anomaly
from exray.scanners.abs import ABSConfig, ABSScanner
from exray.scanners.base import Scanner, get_scanner, list_scanners, register_scanner
from exray.scanners.inversion import Inversion, InversionOutcome, InversionTask
from exray.scanners.nc_inversion import PairInversion
from exray.scanners.neural_cleanse import NCConfig, NeuralCleanseScanner
from exray.scanners.result import FoundTrigger, ScannerResult
from exray.scanners.ssim import ms_ssim

__all__ = [
    "ABSConfig",
    "ABSScanner",
    "FoundTrigger",
    "Inversion",
    "InversionOutcome",
    "InversionTask",
    "NCConfig",
    "NeuralCleanseScanner",
    "PairInversion",
    "Scanner",
    "ScannerResult",
    "get_scanner",
    "list_scanners",
    "mad_anomaly",
    "ms_ssim",
    "register_scanner",
]
