"""Thresholds of the score baselines, chosen by the best separation on a labelled population (spec §4.7).

The paper turns each baseline's per-trigger score into a decision with "unsupervised learning to find the
best separation" (EXP §4.1) — in effect an oracle threshold sweep on the labelled models. Here the
separation is measured where the paper reports it, at the model level:

* a model is flagged when one of its triggers that can flag it (ASR at the calibration threshold) is not
  pruned; a trigger is pruned when its score is below the threshold of its kind; a trigger the method
  does not apply to (score ``None``) is never pruned;
* [CHOICE] one threshold per trigger kind (patch, filter), since the upstream scanner and EX-RAY also
  treat the two kinds separately and their scores live on different scales;
* the thresholds maximise the models' accuracy against the ground truth; ties go to the fewer false
  negatives, then to the lower thresholds (fewer pruned triggers: closer to the upstream scanner).

Candidate thresholds of a kind are the midpoints between consecutive distinct scores, plus one below
the lowest (prune nothing) and one above the highest (prune every trigger of that kind); the search over
them is exact.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from exray.errors import InputError
from exray.metrics import ConfusionCounts, binary_confusion
from exray.refinement.base import KINDS

#: (trigger kind, score or None when the method does not apply) for each trigger that can flag a model
ModelTriggers = Sequence[tuple[str, float | None]]


@dataclass(frozen=True)
class ThresholdChoice:
    """The chosen ``thresholds`` ({kind: threshold}; a trigger is natural below it), the resulting
    model-level ``confusion`` on the population, and how many threshold combinations were compared."""

    thresholds: dict[str, float]
    confusion: ConfusionCounts
    combinations: int

    @property
    def accuracy(self) -> float:
        return self.confusion.accuracy


def flag_models(models: Sequence[ModelTriggers], thresholds: dict[str, float]) -> list[bool]:
    """Model-level decisions: flagged when some trigger is kept (score ≥ its kind's threshold, or None)."""
    flags = []
    for triggers in models:
        kept = False
        for kind, value in triggers:
            if value is None or kind not in thresholds or value >= thresholds[kind]:
                kept = True
                break
        flags.append(kept)
    return flags


def candidate_thresholds(values: np.ndarray) -> np.ndarray:
    """Below the lowest value, the midpoints between consecutive distinct values, above the highest."""
    distinct = np.unique(values)
    return np.concatenate([[distinct[0] - 1.0], (distinct[:-1] + distinct[1:]) / 2, [distinct[-1] + 1.0]])


def select_thresholds(models: Sequence[ModelTriggers], labels: Sequence[bool]) -> ThresholdChoice:
    """The per-kind thresholds with the best model-level accuracy on ``models`` labelled ``labels``
    (True = trojaned); see the module docstring for the rule and the tie-breaks."""
    if len(models) != len(labels) or not models:
        raise InputError("select_thresholds needs one label per model and at least one model")
    y = np.asarray([bool(v) for v in labels])
    for triggers in models:
        for kind, value in triggers:
            if kind not in KINDS:
                raise InputError(f"trigger kind must be one of {KINDS}, got {kind!r}")
            if value is not None and not np.isfinite(value):
                raise InputError(f"scores must be finite numbers or None, got {value!r}")
    kinds = [k for k in KINDS if any(k == kind and v is not None for t in models for kind, v in t)]
    always = np.asarray([any(v is None for _, v in t) for t in models])
    best_scores = {
        k: np.asarray(
            [max((v for kind, v in t if kind == k and v is not None), default=-np.inf) for t in models]
        )
        for k in kinds
    }
    if not kinds:
        return ThresholdChoice({}, binary_confusion(always, y), 1)
    candidates = {k: candidate_thresholds(best_scores[k][np.isfinite(best_scores[k])]) for k in kinds}
    *outer, last = kinds
    positives, negatives = int(y.sum()), int((~y).sum())
    best: tuple[int, int, tuple[int, ...]] | None = None
    combinations = 0
    for indices in itertools.product(*(range(len(candidates[k])) for k in outer)):
        base = always.copy()
        for k, i in zip(outer, indices):
            base |= best_scores[k] >= candidates[k][i]
        rest = ~base
        pos = np.sort(best_scores[last][rest & y])
        neg = np.sort(best_scores[last][rest & ~y])
        thetas = candidates[last]
        tp = int((base & y).sum()) + len(pos) - np.searchsorted(pos, thetas, side="left")
        fp = int((base & ~y).sum()) + len(neg) - np.searchsorted(neg, thetas, side="left")
        correct = tp + (negatives - fp)
        j = int(np.lexsort((np.arange(len(thetas)), positives - tp, -correct))[0])
        key = (-int(correct[j]), positives - int(tp[j]), (*indices, j))
        # most correct, then fewest false negatives, then the lowest thresholds
        best = key if best is None or key < best else best
        combinations += len(thetas)
    chosen = {k: float(candidates[k][i]) for k, i in zip(kinds, best[2])}
    return ThresholdChoice(chosen, binary_confusion(flag_models(models, chosen), y), combinations)
