"""Mapping a model's trigger score to P(trojaned) (spec §2.10).

The score s of a model is its largest post-refinement label-specific REASR (0 when every trigger was
pruned as natural). The probability is p = σ(a·(s − τ)). The default mirrors the round-3 submission's
two calibrated constants — 0.86 when s ≥ 0.9, 0.09 otherwise — as a steep logistic centred between
0.85 and 0.9, so that the ASRs reachable with 10 or 20 examples per class fall clearly on one side;
:func:`fit` chooses a and τ that minimise the TrojAI cross-entropy on a labelled population, and the result is
saved as a small JSON file.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
from scipy.optimize import minimize
from scipy.special import expit

from exray.errors import ConfigError, InputError
from exray.files import read_json
from exray.metrics import cross_entropy


@dataclass(frozen=True)
class Calibration:
    """p = low + (high − low)·σ(slope·(score − threshold)); ``low``/``high`` keep p away from 0 and 1."""

    slope: float = 200.0
    threshold: float = 0.875
    low: float = 0.09
    high: float = 0.86

    def __post_init__(self) -> None:
        values = (self.slope, self.threshold, self.low, self.high)
        if not all(isinstance(v, int | float) and not isinstance(v, bool) for v in values):
            raise ConfigError(f"calibration values must be numbers, got {self}")
        if not all(math.isfinite(v) for v in values):
            raise ConfigError(f"calibration values must be finite numbers, got {self}")
        if not 0.0 <= self.threshold <= 1.0:  # scores are ASRs in [0, 1]
            raise ConfigError(
                f"threshold must be in [0, 1] (scores are attack success rates), got {self.threshold}"
            )
        if not 0.0 <= self.low < self.high <= 1.0:
            raise ConfigError(f"need 0 <= low < high <= 1, got low={self.low}, high={self.high}")
        if not self.slope > 0:
            raise ConfigError(f"slope must be > 0, got {self.slope}")

    def probability(self, score: float) -> float:
        z = self.slope * (score - self.threshold)
        sigma = 1.0 / (1.0 + math.exp(-z)) if z > -700 else 0.0
        return self.low + (self.high - self.low) * sigma

    def to_dict(self) -> dict[str, float]:
        return asdict(self)

    def save(self, path: str | Path, provenance: dict[str, Any] | None = None) -> None:
        """Write the calibration JSON; ``provenance`` (what it was fitted on) is stored next to it."""
        record: dict[str, Any] = {"calibration": self.to_dict()}
        if provenance:
            record["provenance"] = provenance
        Path(path).write_text(json.dumps(record, indent=2) + "\n")

    @classmethod
    def load(cls, path: str | Path) -> Calibration:
        """The calibration in ``path`` (as :meth:`save` writes it); anything else is a ConfigError."""
        try:
            document = read_json(path, "calibration file")
        except InputError as err:
            raise ConfigError(str(err)) from None
        data = document.get("calibration") if isinstance(document, dict) else None
        fields = {f.name for f in dataclasses.fields(cls)}
        if not isinstance(data, dict) or set(data) != fields:
            raise ConfigError(
                f'{path} is not a calibration file: expected {{"calibration": {{...}}}} with keys from '
                f"{sorted(fields)}"
            )
        if not all(isinstance(v, int | float) and not isinstance(v, bool) for v in data.values()):
            raise ConfigError(f"{path} is not a calibration file: its values must be numbers, got {data}")
        try:
            return cls(**{k: float(v) for k, v in data.items()})
        except ConfigError as err:
            raise ConfigError(f"{path}: {err}") from None


def fit(scores: list[float], labels: list[int]) -> Calibration:
    """The calibration minimising the mean clipped cross-entropy of ``scores`` against ``labels`` (0/1).

    Its bounds stay ``1/(n+2)`` away from 0 and 1 for ``n`` models (Laplace's rule of succession): a
    population of 10 or 24 models that happens to be separated perfectly says nothing about a probability
    of exactly 0 or 1, and one model on the wrong side of such a bound would cost an unbounded
    cross-entropy on the next population."""
    s = np.asarray(scores, dtype=float)
    y = np.asarray(labels, dtype=int)
    if len(s) != len(y) or len(s) < 2 or not set(y.tolist()) <= {0, 1}:
        raise InputError("fit needs as many 0/1 labels as scores, and at least two models")
    if len(set(y.tolist())) < 2:
        raise InputError("fit needs both clean and trojaned models")

    floor = 1.0 / (len(s) + 2)

    def loss(params: np.ndarray) -> float:
        slope, threshold, low, high = _unpack(params, floor)
        z = np.clip(slope * (s - threshold), -500, 500)
        p = low + (high - low) / (1 + np.exp(-z))
        return cross_entropy(p, y)

    best = None
    for threshold in np.linspace(0.05, 0.95, 10):
        start = np.array([math.log(20.0), threshold, -2.0, 2.0])
        result = minimize(
            loss, start, method="Nelder-Mead", options={"maxiter": 4000, "xatol": 1e-6, "fatol": 1e-9}
        )
        if best is None or result.fun < best.fun:
            best = result
    slope, threshold, low, high = _unpack(best.x, floor)
    # scores lie in [0, 1]: a threshold beyond them flags all or none, as the bound itself does
    return Calibration(slope=slope, threshold=min(max(threshold, 0.0), 1.0), low=low, high=high)


def _unpack(params: np.ndarray, floor: float) -> tuple[float, float, float, float]:
    """Unconstrained optimiser parameters → (slope > 0, threshold, floor ≤ low ≤ 0.5 ≤ high ≤ 1 − floor)."""
    slope = float(np.exp(np.clip(params[0], -10, 10)))
    low = float(floor + (0.5 - floor) * expit(params[2]))
    high = float(0.5 + (0.5 - floor) * expit(params[3]))
    return slope, float(params[1]), low, high
