"""A WaNet-style warping trigger (Nguyen & Tran, "WaNet — Imperceptible Warping-based Backdoor Attack",
ICLR 2021), one of the study's attacks of a different nature than patches and filters (spec §6.3
[CHOICE] "BadNets, Blended, a clean-label or SIG attack, and WaNet").

The trigger is a fixed smooth displacement field: a ``grid``×``grid`` array of uniform [−1, 1] offsets
(x and y), normalised by its mean absolute value, upsampled bicubically to the image size, scaled by
``strength`` / H (in grid_sample's [−1, 1] coordinates) and added to the identity sampling grid, which is
clamped to the image; the image is resampled bilinearly. WaNet's CIFAR setting is grid 4, strength 0.5;
larger strengths are learned in fewer epochs. The field depends on (``seed``, ``grid``, H, W) only.

**Noise mode** (WaNet §3.3): :meth:`WarpTrigger.noise_warp` warps with the same field plus an independent
uniform [−1, 1]/H perturbation of every sampling point, per image. Training on such images *at their true
labels* (``cross_ratio`` × the poisoned count, :func:`exray.attacks.with_noise_mode`) teaches the network the
exact warp rather than any warp, which is what makes WaNet hard to invert.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F

from exray.errors import ConfigError
from exray.triggers.base import Trigger, check_config, register_trigger
from exray.utils import derive_seed, torch_generator


@register_trigger
@dataclass(frozen=True)
class WarpTrigger(Trigger):
    """Warp every image with the same seeded smooth displacement field (see the module docstring)."""

    type: ClassVar[str] = "warp"

    seed: int
    strength: float = 0.5
    grid: int = 4

    def __post_init__(self) -> None:
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise ConfigError(f"warp seed must be an int >= 0, got {self.seed!r}")
        if not 0.0 < self.strength <= 8.0:
            raise ConfigError(f"warp strength must be in (0, 8], got {self.strength}")
        if isinstance(self.grid, bool) or not isinstance(self.grid, int) or self.grid < 2:
            raise ConfigError(f"warp grid must be an int >= 2, got {self.grid!r}")

    def sampling_grid(self, height: int, width: int) -> torch.Tensor:
        """The (1, H, W, 2) grid_sample grid of the warp."""
        return _sampling_grid(self.seed, self.strength, self.grid, height, width).clone()

    def _stamp(
        self,
        images: torch.Tensor,
        *,
        foreground: torch.Tensor | None = None,
        rng: np.random.Generator | None = None,
    ) -> torch.Tensor:
        grid = _sampling_grid(self.seed, self.strength, self.grid, *images.shape[-2:])
        grid = grid.to(images.device, images.dtype).expand(images.shape[0], -1, -1, -1)
        return F.grid_sample(images, grid, mode="bilinear", align_corners=True).clamp(0.0, 1.0)

    def noise_warp(self, images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """``images`` warped with the field plus per-image noise (WaNet's noise mode; module docstring)."""
        n, _, height, width = images.shape
        grid = _sampling_grid(self.seed, self.strength, self.grid, height, width).expand(n, -1, -1, -1)
        noise = torch.rand(n, height, width, 2, generator=generator) * 2.0 - 1.0
        noise = noise / torch.tensor([width, height], dtype=noise.dtype)  # (x, y): ±1 pixel each
        grid = (grid + noise).clamp(-1.0, 1.0).to(images.device, images.dtype)
        return F.grid_sample(images, grid, mode="bilinear", align_corners=True).clamp(0.0, 1.0)

    def to_config(self) -> dict[str, Any]:
        return {"type": self.type, "seed": self.seed, "strength": self.strength, "grid": self.grid}

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> WarpTrigger:
        check_config(config, cls, {"seed", "strength", "grid"})
        return cls(int(config["seed"]), float(config["strength"]), int(config["grid"]))


@lru_cache(maxsize=32)
def _sampling_grid(seed: int, strength: float, grid: int, height: int, width: int) -> torch.Tensor:
    gen = torch_generator(derive_seed(seed, "warp-field", grid))
    field = torch.rand(1, 2, grid, grid, generator=gen) * 2.0 - 1.0
    field = field / field.abs().mean()
    field = F.interpolate(field, size=(height, width), mode="bicubic", align_corners=True).permute(0, 2, 3, 1)
    ys = torch.linspace(-1.0, 1.0, height)
    xs = torch.linspace(-1.0, 1.0, width)
    identity = torch.stack(torch.meshgrid(xs, ys, indexing="xy"), dim=-1)[None]
    return (identity + strength * field / height).clamp(-1.0, 1.0)
