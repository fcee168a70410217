"""The result every poisoned-sample detector returns (spec §6.3–6.4)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, ClassVar, Protocol

import numpy as np

from exray.errors import InputError
from exray.metrics.classification import PRF, BinaryLike, as_binary, precision_recall_f1


@dataclass(frozen=True, eq=False)
class DetectionResult:
    """Outcome of one detector run over a training set of N samples.

    Attributes:
        detector: the detector's name (``"activation_clustering"``, ``"spectral_signatures"``, ``"scan"``).
        options: the detector's constructor options.
        scores: (N,) per-sample suspicion scores; higher = more suspicious. Their scale is the
            detector's own (see each detector) and is comparable within a class only.
        flags: (N,) booleans, True = predicted poisoned.
        classes: per-class diagnostics, keyed by label.
        summary: run-level diagnostics (e.g. SCAn's EM iterations).
    """

    detector: str
    options: Mapping[str, Any]
    scores: np.ndarray
    flags: np.ndarray
    classes: Mapping[int, Mapping[str, Any]] = field(default_factory=dict)
    summary: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        scores = np.array(self.scores, dtype=np.float64)
        flags = np.array(self.flags, dtype=bool)
        if scores.shape != flags.shape or scores.ndim != 1:
            raise InputError(f"scores {scores.shape} and flags {flags.shape} must be 1-D of equal length")
        scores.setflags(write=False)
        flags.setflags(write=False)
        object.__setattr__(self, "scores", scores)
        object.__setattr__(self, "flags", flags)
        object.__setattr__(self, "options", MappingProxyType(dict(self.options)))
        object.__setattr__(self, "summary", MappingProxyType(dict(self.summary)))
        object.__setattr__(
            self,
            "classes",
            MappingProxyType({int(k): MappingProxyType(dict(v)) for k, v in self.classes.items()}),
        )

    @property
    def n_flagged(self) -> int:
        return int(self.flags.sum())

    @property
    def flagged_indices(self) -> np.ndarray:
        """Indices of the flagged samples, ascending."""
        return np.flatnonzero(self.flags)

    def evaluate(self, is_poisoned: BinaryLike) -> PRF:
        """Precision, recall and F1 of the flags against ground truth over the whole training set.

        Samples of classes the detector did not flag count as predicted clean (spec §6.3 [CHOICE]).
        """
        truth = as_binary(is_poisoned, "is_poisoned")
        if truth.shape != self.flags.shape:
            raise InputError(
                f"is_poisoned has {truth.shape[0]} entries but the result covers {self.flags.shape[0]}"
            )
        return precision_recall_f1(self.flags, truth)


class PoisonDetector(Protocol):
    """What the three detectors share: a name and ``detect(features, labels)``."""

    name: ClassVar[str]

    def detect(self, features: Any, labels: Any) -> DetectionResult: ...
