"""The adaptive attack against EX-RAY (EX-RAY paper §4.5, Table 7; issue 19 §1).

An attacker who knows EX-RAY trains the backdoor so that, at EX-RAY's layer, the features of
trigger-stamped victim images look like those of clean target-class images: then the features that flip V
to V+trigger are those that separate V from T, and EX-RAY judges the trigger natural. The paper's loss adds
to the cross-entropy ``weight`` × the difference between the per-channel mean and standard deviation of the
feature maps of the two groups (``variant="moments"``), and reports a variant on the feature MSE
(``variant="mse"``: the squared difference of the two groups' mean feature maps).

Groups, per batch: rows flagged ``poisoned`` whose training label is the target (stamped victim images),
and rows not poisoned whose *true* label is the target (clean target images). A batch that lacks either
group adds 0. The term is a :class:`~exray.train.LossTerm` for :func:`exray.train.train_model`, like the
SDRM regulariser (:mod:`exray.attacks.sdrm`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

from exray.models.layers import resolve_layer
from exray.options import Options, check_choice, check_int, check_layer, check_real
from exray.train import Batch, LossTerm

Variant = Literal["moments", "mse"]


@dataclass(frozen=True)
class AdaptiveConfig(Options):
    """``weight`` (the paper's Table 7: 1 to 10,000), ``layer`` (a module name or ``block:K``; ``None``:
    EX-RAY's default, the second-to-last block), ``target_class`` (the attack's target), ``variant``."""

    target_class: int
    weight: float = 1.0
    layer: str | None = None
    variant: Variant = "moments"

    def __post_init__(self) -> None:
        check_real("adaptive weight", self.weight, 0.0, 1e6)
        check_int("target_class", self.target_class, 0)
        check_choice("variant", self.variant, ("moments", "mse"))
        check_layer("layer", self.layer)

    def loss_term(self, model: nn.Module, sample: torch.Tensor, name: str = "adaptive") -> LossTerm:
        """The loss term for ``model`` (the layer resolved with a probe pass on ``sample``)."""
        layer = resolve_layer(model, self.layer, sample)
        return LossTerm(
            AdaptiveLoss(layer, self.target_class, self.variant), (layer,), float(self.weight), name
        )


@dataclass(frozen=True)
class AdaptiveLoss:
    """The feature-matching loss of one batch (module docstring)."""

    layer: str
    target_class: int
    variant: Variant = "moments"

    def __call__(self, batch: Batch, features: Mapping[str, torch.Tensor]) -> torch.Tensor:
        f = features[self.layer]
        f = f.float() if f.ndim == 4 else f.float().reshape(f.shape[0], -1, 1, 1)
        stamped = batch.poisoned & (batch.labels == self.target_class)
        clean = ~batch.poisoned & (batch.true_labels == self.target_class)
        if not bool(stamped.any()) or not bool(clean.any()):
            return f.sum() * 0.0  # keeps the graph (and the dtype) of the step
        a, b = f[stamped], f[clean]
        if self.variant == "mse":
            return ((a.mean(0) - b.mean(0)) ** 2).mean()
        mean_gap = ((_moments(a)[0] - _moments(b)[0]) ** 2).mean()
        std_gap = ((_moments(a)[1] - _moments(b)[1]) ** 2).mean()
        return mean_gap + std_gap


def _moments(f: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel mean and (population) standard deviation over samples and positions of (N, C, H, W)."""
    flat = f.transpose(0, 1).reshape(f.shape[1], -1)
    return flat.mean(1), flat.std(1, correction=0)
