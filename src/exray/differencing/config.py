"""Validated settings of the symmetric feature-differencing optimisation (spec §4.3–4.4)."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any, Literal

import torch

from exray.errors import ConfigError

LossForm = Literal["official", "paper"]
Engine = Literal["batched", "reference"]
Precision = Literal["fp32", "bf16", "fp16"]
#: The autocast dtype of each reduced precision.
AUTOCAST_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}
Sides = Literal["both", "a_to_b", "b_to_a"]
SIDES: tuple[str, ...] = ("both", "a_to_b", "b_to_a")
Pairing = Literal["random", "index"]


@dataclass(frozen=True)
class MaskConfig:
    """How a mask is optimised. Defaults are the official EX-RAY code's (spec §4.3).

    * ``loss="official"``: Σm plus a logit-difference barrier weighted ``barrier_weight`` (10) on each
      side while that side's flip accuracy on the mini-batch is below its epoch-0 level.
    * ``loss="paper"``: Σm + w·CE per side, with w = ``barrier_weight`` while the side's cross-entropy
      exceeds ``alpha`` and 0 otherwise (paper eq. 4, α = 0.1, spec §4.4).
    * ``patience``: stop a problem early once its best feasible mask has not shrunk by more than
      ``min_improvement`` (in units of Σm) for this many epochs *and* is decided (≥ 95 % of its channels
      below 0.1 or above 0.9; a uniform plateau of the size term is not convergence). ``None`` runs all
      ``epochs`` as the official code does.
    * ``precision="bf16"`` runs the suffix under bfloat16 autocast (about 2× faster on CPUs with bf16
      units; masks and Adam state stay fp32); ``"fp16"`` under float16 autocast, for GPUs without
      bfloat16 (before Ampere), where it is the fast precision (on a CPU it runs, slower than fp32).
    * ``m1_pairing``: how M1 pairs clean victim and clean target images. ``"random"`` (the paper, §3.2)
      redraws the pairs every epoch (an independent permutation of each class); ``"index"`` is the
      official script's: victim image j is always paired with target image j (the first min(|V|, |T|) of
      each), one permutation applied to both each epoch.
    * ``engine="batched"`` optimises many problems in one stacked pass; ``"reference"`` runs each problem
      alone through a transcription of the official loop (official symmetric loss only; for checking
      and for measuring the batched engine against it).
    """

    loss: LossForm = "official"
    epochs: int = 400
    batch_size: int = 10
    lr: float = 5e-2
    init_logit: float = 4.0
    barrier_weight: float = 10.0
    alpha: float = 0.1
    patience: int | None = None
    min_improvement: float = 1e-2
    engine: Engine = "batched"
    precision: Precision = "fp32"
    m1_pairing: Pairing = "random"

    def __post_init__(self) -> None:
        if self.loss not in ("official", "paper"):
            raise ConfigError(f"loss must be 'official' or 'paper', got {self.loss!r}")
        for name in ("epochs", "batch_size"):
            value = getattr(self, name)
            if not _count(value):
                raise ConfigError(f"{name} must be an integer in [1, {MAX_COUNT:,}], got {value!r}")
        for name in ("lr", "barrier_weight", "alpha"):
            value = getattr(self, name)
            if not _finite_number(value) or not value > 0:
                raise ConfigError(f"{name} must be a finite number > 0, got {value!r}")
        for name in ("init_logit", "min_improvement"):
            if not _finite_number(getattr(self, name)):
                raise ConfigError(f"{name} must be a finite number, got {getattr(self, name)!r}")
        if self.patience is not None and not _count(self.patience):
            raise ConfigError(
                f"patience must be None or an integer in [1, {MAX_COUNT:,}], got {self.patience!r}"
            )
        if self.engine not in ("batched", "reference"):
            raise ConfigError(f"engine must be 'batched' or 'reference', got {self.engine!r}")
        if self.precision not in ("fp32", "bf16", "fp16"):
            raise ConfigError(f"precision must be 'fp32', 'bf16' or 'fp16', got {self.precision!r}")
        if self.engine == "reference" and (
            self.loss != "official" or self.patience is not None or self.precision != "fp32"
        ):
            raise ConfigError(
                "the reference engine implements the official fp32 loop without early stopping only"
            )
        if self.m1_pairing not in ("random", "index"):
            raise ConfigError(f"m1_pairing must be 'random' or 'index', got {self.m1_pairing!r}")
        if self.min_improvement < 0:
            raise ConfigError(f"min_improvement must be >= 0, got {self.min_improvement!r}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


#: Largest epoch count, batch size or patience accepted (a million epochs is weeks of CPU; beyond, a typo).
MAX_COUNT = 1_000_000


def _count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= MAX_COUNT


def _finite_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def check_sides(sides: str) -> None:
    if sides not in SIDES:
        raise ConfigError(f"sides must be one of {SIDES}, got {sides!r}")
