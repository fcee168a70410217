"""EX-RAY core: symmetric feature differencing, M1/M2 comparison and decision policies (paper §3)."""

from exray.differencing.compare import TriggerCase, compare_trigger, compare_triggers
from exray.differencing.config import PRECISION_SETTINGS, MaskConfig, resolve_precision
from exray.differencing.masks import symmetric_mask
from exray.differencing.optimizer import optimize_masks
from exray.differencing.policies import (
    EXF_FILTER,
    EXF_MASK,
    OfficialPolicy,
    PaperPolicy,
    R3Policy,
    resolve_policy,
)
from exray.differencing.problem import MaskProblem, MaskResult
from exray.differencing.verdict import Verdict
from exray.models.runtime import derive_target

__all__ = [
    "EXF_FILTER",
    "EXF_MASK",
    "PRECISION_SETTINGS",
    "MaskConfig",
    "MaskProblem",
    "MaskResult",
    "OfficialPolicy",
    "PaperPolicy",
    "R3Policy",
    "TriggerCase",
    "Verdict",
    "compare_trigger",
    "compare_triggers",
    "derive_target",
    "optimize_masks",
    "resolve_policy",
    "resolve_precision",
    "symmetric_mask",
]
