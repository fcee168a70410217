"""Refinement methods with one per-trigger interface: EX-RAY and the paper's eight baselines (design §1,
spec §4.7, EXP §4.1 Table 1).

``get_method(name, **options)`` builds a :class:`RefinementMethod`; ``method.score(model, cases)`` gives one
:class:`TriggerScore` per trigger (higher = more injected), ``method.judge(...)`` the natural/injected
decisions. Score baselines decide with thresholds chosen on a labelled population
(:func:`select_thresholds`, passed with ``method.with_thresholds``); the random forest is trained on half
of the models (:func:`split_models`, :func:`cross_fit`).
"""

from __future__ import annotations

from typing import Any

from exray.errors import ConfigError
from exray.refinement.attribution import (
    AttributionMethod,
    DeepLiftMethod,
    IntegratedGradientsMethod,
    OcclusionMethod,
    suffix_module,
)
from exray.refinement.base import (
    ASR_TOLERANCE,
    KINDS,
    Judgement,
    RefinementCase,
    RefinementMethod,
    Selection,
    TriggerScore,
    select_cases,
)
from exray.refinement.dissection import NetworkDissectionMethod, channel_iou, trigger_region
from exray.refinement.exray import (
    ExrayMethod,
    OneSidedTargetToVictimMethod,
    OneSidedVictimToTargetMethod,
)
from exray.refinement.inner import RF_FEATURES, InnerL2Method, RandomForestMethod, cross_fit, split_models
from exray.refinement.thresholds import ThresholdChoice, flag_models, select_thresholds

#: Registered methods in the order of the paper's Table 1 (EX-RAY last).
METHODS: dict[str, type[RefinementMethod]] = {
    cls.name: cls
    for cls in (
        InnerL2Method,
        RandomForestMethod,
        IntegratedGradientsMethod,
        DeepLiftMethod,
        OcclusionMethod,
        NetworkDissectionMethod,
        OneSidedVictimToTargetMethod,
        OneSidedTargetToVictimMethod,
        ExrayMethod,
    )
}


def list_methods() -> list[str]:
    """Registered method names, in the order of the paper's Table 1."""
    return list(METHODS)


def get_method(name: str, **options: Any) -> RefinementMethod:
    """A refinement method by registry name, with validated ``options`` (its constructor's keywords)."""
    if name not in METHODS:
        raise ConfigError(f"unknown refinement method {name!r}; registered: {list_methods()}")
    try:
        return METHODS[name](**options)
    except TypeError as err:
        raise ConfigError(f"bad options for {name!r}: {err}") from None


__all__ = [
    "ASR_TOLERANCE",
    "KINDS",
    "METHODS",
    "RF_FEATURES",
    "AttributionMethod",
    "DeepLiftMethod",
    "ExrayMethod",
    "InnerL2Method",
    "IntegratedGradientsMethod",
    "Judgement",
    "NetworkDissectionMethod",
    "OcclusionMethod",
    "OneSidedTargetToVictimMethod",
    "OneSidedVictimToTargetMethod",
    "RandomForestMethod",
    "RefinementCase",
    "RefinementMethod",
    "Selection",
    "ThresholdChoice",
    "TriggerScore",
    "channel_iou",
    "cross_fit",
    "flag_models",
    "get_method",
    "list_methods",
    "select_cases",
    "select_thresholds",
    "split_models",
    "suffix_module",
    "trigger_region",
]
