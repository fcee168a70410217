"""Metrics: TrojAI model-level scores (spec §7.1), binary-decision metrics, and differentiable
distribution distances (spec §6.1, §6.5)."""

from exray.metrics.classification import (
    PRF,
    ConfusionCounts,
    accuracy,
    binary_confusion,
    fp_reduction,
    precision_recall_f1,
    tp_loss,
)
from exray.metrics.distances import (
    energy_distance,
    mmd,
    mmd_bandwidths,
    random_directions,
    sliced_wasserstein,
    wasserstein_1d,
)
from exray.metrics.trojai import (
    CE_EPSILON,
    CI_Z,
    MISSING_PROBABILITY,
    brier_score,
    confusion_at,
    cross_entropy,
    cross_entropy_ci,
    cross_entropy_per_model,
    nist_thresholds,
    roc_auc,
    roc_auc_nist,
)

__all__ = [
    "CE_EPSILON",
    "CI_Z",
    "MISSING_PROBABILITY",
    "PRF",
    "ConfusionCounts",
    "accuracy",
    "binary_confusion",
    "brier_score",
    "confusion_at",
    "cross_entropy",
    "cross_entropy_ci",
    "cross_entropy_per_model",
    "energy_distance",
    "fp_reduction",
    "mmd",
    "mmd_bandwidths",
    "nist_thresholds",
    "precision_recall_f1",
    "random_directions",
    "roc_auc",
    "roc_auc_nist",
    "sliced_wasserstein",
    "tp_loss",
    "wasserstein_1d",
]
