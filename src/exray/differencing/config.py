"""Validated settings of the symmetric feature-differencing optimisation (spec §4.3–4.4)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, get_args

import torch

from exray.errors import ConfigError
from exray.models.runtime import native_bf16
from exray.options import Options, check_choice, check_int, check_real

LossForm = Literal["official", "paper"]
Engine = Literal["batched", "reference"]
Precision = Literal["fp32", "bf16", "fp16"]
PRECISIONS: tuple[str, ...] = get_args(Precision)
#: What a precision *setting* may say (a study spec's ``scan.precision``, ``--precision``): a precision, or
#: ``"auto"``, resolved per device by :func:`resolve_precision` before a :class:`MaskConfig` is made.
PRECISION_SETTINGS: tuple[str, ...] = (*PRECISIONS, "auto")
#: The autocast dtype of each reduced precision.
AUTOCAST_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}
Sides = Literal["both", "a_to_b", "b_to_a"]
SIDES: tuple[str, ...] = ("both", "a_to_b", "b_to_a")
Pairing = Literal["random", "index"]


@dataclass(frozen=True)
class MaskConfig(Options):
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
        check_choice("loss", self.loss, ("official", "paper"))
        for name in ("epochs", "batch_size"):
            check_int(name, getattr(self, name), 1, MAX_COUNT)
        for name in ("lr", "barrier_weight", "alpha"):
            check_real(name, getattr(self, name), 0.0, low_open=True)
        check_real("init_logit", self.init_logit)
        check_real("min_improvement", self.min_improvement, 0.0)
        if self.patience is not None:
            check_int("patience", self.patience, 1, MAX_COUNT)
        check_choice("engine", self.engine, ("batched", "reference"))
        check_choice("precision", self.precision, PRECISIONS)
        check_choice("m1_pairing", self.m1_pairing, ("random", "index"))
        if self.engine == "reference" and (
            self.loss != "official" or self.patience is not None or self.precision != "fp32"
        ):
            raise ConfigError(
                "the reference engine implements the official fp32 loop without early stopping only"
            )


#: Largest epoch count, batch size or patience accepted (a million epochs is weeks of CPU; beyond, a typo).
MAX_COUNT = 1_000_000


def resolve_precision(precision: str, device: torch.device | str = "cpu") -> Precision:
    """A precision setting as it runs on ``device``: ``"auto"`` is ``"bf16"`` where the device computes
    bfloat16 natively (:func:`exray.models.runtime.native_bf16`: AMX or AVX-512 BF16 CPUs, CUDA GPUs that
    support it), else ``"fp32"``; any other setting is itself. bf16 masks are ~1.5-2× faster there and slower
    where bf16 is emulated; on the policy-calibration populations they changed no policy's counts
    (docs/results.md). Records and cache keys hold the resolved value, never ``"auto"``."""
    check_choice("precision", precision, PRECISION_SETTINGS)
    if precision != "auto":
        return precision  # type: ignore[return-value]
    return "bf16" if native_bf16(torch.device(device)) else "fp32"


def check_sides(sides: str) -> None:
    if sides not in SIDES:
        raise ConfigError(f"sides must be one of {SIDES}, got {sides!r}")
