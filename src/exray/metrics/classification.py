"""Binary-decision metrics: confusion counts, precision / recall / F1, accuracy, refinement effects.

Used by the TrojAI metrics (spec §7.1, model-level decisions) and by the poisoned-sample detectors
(spec §6.3: F1 of poisoned-training-sample detection, positive = poisoned).

Zero-division convention: a ratio whose denominator is 0 is ``zero_division`` (default 0.0), as
scikit-learn's ``precision_recall_fscore_support(zero_division=0)``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from exray.errors import InputError

BinaryLike = Sequence[bool] | Sequence[int] | np.ndarray | torch.Tensor


def as_binary(values: BinaryLike, name: str) -> np.ndarray:
    """``values`` as a 1-D boolean array; raises :class:`InputError` unless every entry is 0/1 or bool."""
    if isinstance(values, torch.Tensor):
        values = values.detach().cpu().numpy()
    array = np.asarray(values)
    if array.ndim != 1:
        raise InputError(f"{name} must be 1-D, got shape {array.shape}")
    if array.dtype == bool:
        return array
    if array.dtype == object or not np.issubdtype(array.dtype, np.number):
        raise InputError(f"{name} must hold 0/1 or booleans, got dtype {array.dtype}")
    if not np.all(np.isin(array, (0, 1))):
        raise InputError(f"{name} must hold only 0/1 (or booleans); found other values")
    return array.astype(bool)


def _paired(predicted: BinaryLike, actual: BinaryLike) -> tuple[np.ndarray, np.ndarray]:
    pred = as_binary(predicted, "predicted")
    true = as_binary(actual, "actual")
    if pred.shape != true.shape:
        raise InputError(f"predicted and actual differ in length: {pred.shape[0]} vs {true.shape[0]}")
    if pred.size == 0:
        raise InputError("predicted and actual are empty")
    return pred, true


def _ratio(num: int, den: int, zero_division: float) -> float:
    return num / den if den > 0 else float(zero_division)


@dataclass(frozen=True)
class ConfusionCounts:
    """Counts of a binary decision against ground truth (positive = trojaned model / poisoned sample)."""

    tp: int
    fp: int
    fn: int
    tn: int

    @property
    def total(self) -> int:
        return self.tp + self.fp + self.fn + self.tn

    @property
    def accuracy(self) -> float:
        return _ratio(self.tp + self.tn, self.total, 0.0)

    @property
    def precision(self) -> float:
        return _ratio(self.tp, self.tp + self.fp, 0.0)

    @property
    def recall(self) -> float:
        return _ratio(self.tp, self.tp + self.fn, 0.0)

    @property
    def f1(self) -> float:
        return _ratio(2 * self.tp, 2 * self.tp + self.fp + self.fn, 0.0)

    @property
    def fpr(self) -> float:
        """False-positive rate FP / (FP + TN); 0.0 without negatives."""
        return _ratio(self.fp, self.fp + self.tn, 0.0)

    @property
    def tpr(self) -> float:
        """True-positive rate (= recall)."""
        return self.recall


@dataclass(frozen=True)
class PRF:
    """Precision, recall and F1 of binary flags against ground truth."""

    precision: float
    recall: float
    f1: float


def binary_confusion(predicted: BinaryLike, actual: BinaryLike) -> ConfusionCounts:
    """Confusion counts of boolean decisions ``predicted`` against ground truth ``actual``."""
    pred, true = _paired(predicted, actual)
    return ConfusionCounts(
        tp=int(np.sum(pred & true)),
        fp=int(np.sum(pred & ~true)),
        fn=int(np.sum(~pred & true)),
        tn=int(np.sum(~pred & ~true)),
    )


def precision_recall_f1(predicted: BinaryLike, actual: BinaryLike, *, zero_division: float = 0.0) -> PRF:
    """Precision, recall and F1 of flags ``predicted`` against ``actual`` (positive class = True).

    Equals scikit-learn's ``precision_recall_fscore_support(actual, predicted, average="binary",
    zero_division=zero_division)``.
    """
    c = binary_confusion(predicted, actual)
    return PRF(
        precision=_ratio(c.tp, c.tp + c.fp, zero_division),
        recall=_ratio(c.tp, c.tp + c.fn, zero_division),
        f1=_ratio(2 * c.tp, 2 * c.tp + c.fp + c.fn, zero_division),
    )


def accuracy(predicted: BinaryLike, actual: BinaryLike) -> float:
    """Fraction of decisions equal to the ground truth."""
    return binary_confusion(predicted, actual).accuracy


def _relative_drop(base: int, refined: int) -> float:
    # 1 − refined/base. With base = 0 there is nothing to drop: 0.0 if refined is 0 too, and −inf
    # (the limit of 1 − refined/base as base → 0⁺) if the refinement created counts from none.
    if base == 0:
        return 0.0 if refined == 0 else -math.inf
    return 1.0 - refined / base


def fp_reduction(base: BinaryLike, refined: BinaryLike, actual: BinaryLike) -> float:
    """FP reduction of a refined scanner over its base: ``1 − FP_refined / FP_base``.

    ``base`` and ``refined`` are per-model binary decisions (True = trojaned), ``actual`` the ground
    truth. 1.0 means every false positive was removed, 0.0 none, a negative value that the refinement
    added false positives. With ``FP_base = 0`` the result is 0.0 (or −inf if ``FP_refined > 0``).
    """
    b = binary_confusion(base, actual)
    r = binary_confusion(refined, actual)
    return _relative_drop(b.fp, r.fp)


def tp_loss(base: BinaryLike, refined: BinaryLike, actual: BinaryLike) -> float:
    """TP loss of a refined scanner over its base: ``1 − TP_refined / TP_base``.

    0.0 means no true detection was lost. With ``TP_base = 0`` the result is 0.0 (or −inf if
    ``TP_refined > 0``, i.e. a gain from nothing).
    """
    b = binary_confusion(base, actual)
    r = binary_confusion(refined, actual)
    return _relative_drop(b.tp, r.tp)
