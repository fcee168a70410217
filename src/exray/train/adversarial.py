"""Adversarial training as in TrojAI round 3 (spec §7.2): PGD or FBF on a share of every batch.

* **PGD** (Madry et al.): a uniform random start in the L∞ ball, then ``iterations`` signed-gradient steps
  of ``eps_iter = 2·eps / iterations``, each projected back onto the ball and into [0, 1].
* **FBF** ("fast is better than free", Wong et al. 2020): a uniform random start, one signed-gradient step
  of ``alpha = 1.2·eps``, projected.

TrojAI draws eps ∈ {4, 8, 16}/255, the adversarial batch ratio ∈ {0.1, 0.3} and the PGD iterations ∈
{1, 3, 7}; :class:`AdversarialConfig` accepts any positive values. Perturbations are crafted with the model
in its current (training) mode, as the FBF reference does.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import nn

from exray.errors import ConfigError
from exray.models.runtime import bf16_autocast

AdversarialMethod = Literal["pgd", "fbf"]
#: TrojAI round-3 values (spec §7.2).
TROJAI_EPS: tuple[float, ...] = (4 / 255, 8 / 255, 16 / 255)
TROJAI_RATIOS: tuple[float, ...] = (0.1, 0.3)
TROJAI_PGD_ITERATIONS: tuple[int, ...] = (1, 3, 7)
FBF_ALPHA = 1.2


@dataclass(frozen=True)
class AdversarialConfig:
    """``method`` "pgd" or "fbf"; ``eps``: L∞ radius in [0, 1] pixel units (e.g. 8/255); ``ratio``: share
    of each batch replaced by adversarial examples; ``iterations``: PGD steps (FBF always takes one)."""

    method: AdversarialMethod = "pgd"
    eps: float = 8 / 255
    ratio: float = 0.3
    iterations: int = 3

    def __post_init__(self) -> None:
        if self.method not in ("pgd", "fbf"):
            raise ConfigError(f"adversarial method must be 'pgd' or 'fbf', got {self.method!r}")
        if not 0.0 < self.eps <= 1.0:
            raise ConfigError(f"adversarial eps must be in (0, 1] (pixel units), got {self.eps}")
        if not 0.0 < self.ratio <= 1.0:
            raise ConfigError(f"adversarial batch ratio must be in (0, 1], got {self.ratio}")
        if not isinstance(self.iterations, int) or self.iterations < 1:
            raise ConfigError(f"adversarial iterations must be an int >= 1, got {self.iterations!r}")
        if self.method == "fbf" and self.iterations != 1:
            raise ConfigError("FBF takes exactly one step: iterations must be 1")

    @property
    def step_size(self) -> float:
        """PGD: eps_iter = 2·eps / iterations; FBF: alpha = 1.2·eps (spec §7.2)."""
        return 2.0 * self.eps / self.iterations if self.method == "pgd" else FBF_ALPHA * self.eps

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> AdversarialConfig:
        known = {"method", "eps", "ratio", "iterations"}
        unknown = set(data) - known
        if unknown:
            raise ConfigError(f"unknown adversarial options {sorted(unknown)}; known: {sorted(known)}")
        return cls(**data)


def perturb(
    model: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    config: AdversarialConfig,
    generator: torch.Generator,
    *,
    bf16: bool | str = False,
) -> torch.Tensor:
    """Adversarial versions of ``images`` within the L∞ ball of radius ``config.eps``, clipped to [0, 1].

    The model's parameters receive no gradient (only the perturbation does); the result is detached.
    """
    eps = config.eps
    delta = (torch.rand(images.shape, generator=generator, dtype=images.dtype) * 2.0 - 1.0) * eps
    delta = delta.to(images.device)  # drawn on the CPU generator: the same draw on every device
    delta = (images + delta).clamp(0.0, 1.0) - images
    autocast = bf16_autocast(images.device, bf16)
    requires = [p.requires_grad for p in model.parameters()]
    for p in model.parameters():
        p.requires_grad_(False)
    try:
        for _ in range(config.iterations):
            delta.requires_grad_(True)
            with autocast:
                loss = F.cross_entropy(model(images + delta), labels)
            (grad,) = torch.autograd.grad(loss, delta)
            delta = delta.detach() + config.step_size * grad.sign()
            delta = delta.clamp(-eps, eps)
            delta = (images + delta).clamp(0.0, 1.0) - images
    finally:
        for p, flag in zip(model.parameters(), requires, strict=True):
            p.requires_grad_(flag)
    return (images + delta).detach()
