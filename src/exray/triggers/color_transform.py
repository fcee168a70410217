"""The "unknown" random filter family (spec §7.3.6 [CHOICE]): a colour matrix plus bias, a gamma, and an
optional vignette. It tests whether filter reverse engineering (spec §2.7) generalises beyond the five
Instagram recipes.

x' = clip(M·x + b, 0, 1) ^ gamma · (1 − vignette · r²), r = the normalised distance from the image
centre (1 at the corners).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch

from exray.errors import ConfigError
from exray.triggers.base import Trigger, check_config, register_trigger

_EPS = 1e-6


@register_trigger
@dataclass(frozen=True)
class ColorTransformFilter(Trigger):
    """A whole-image colour transform; draw a random member with :meth:`random`."""

    type: ClassVar[str] = "color_transform"

    matrix: tuple[tuple[float, float, float], tuple[float, float, float], tuple[float, float, float]]
    bias: tuple[float, float, float] = (0.0, 0.0, 0.0)
    gamma: float = 1.0
    vignette: float = 0.0

    def __post_init__(self) -> None:
        if len(self.matrix) != 3 or any(len(row) != 3 for row in self.matrix):
            raise ConfigError(f"color_transform matrix must be 3×3, got {self.matrix!r}")
        if len(self.bias) != 3:
            raise ConfigError(f"color_transform bias must have 3 entries, got {self.bias!r}")
        if not self.gamma > 0.0:
            raise ConfigError(f"color_transform gamma must be > 0, got {self.gamma}")
        if not 0.0 <= self.vignette < 1.0:
            raise ConfigError(f"color_transform vignette must be in [0, 1), got {self.vignette}")

    @classmethod
    def random(cls, rng: int | np.random.Generator, *, strength: float = 0.5) -> ColorTransformFilter:
        """Draw a random filter from a seed or generator.

        The matrix is per-channel gains U(0.8, 1.2) times (1 − s)·I + s·D, with D a random row-stochastic
        mixing matrix and s ~ U(0.5, 1)·``strength`` (so colours mix but overall brightness is kept);
        bias ~ U(−0.08, 0.08); gamma log-uniform in [0.7, 1.4]; vignette 0 with probability 0.5, otherwise
        U(0.2, 0.6).
        """
        if not 0.0 < strength <= 1.0:
            raise ConfigError(f"strength must be in (0, 1], got {strength}")
        gen = np.random.default_rng(rng)
        mix = gen.dirichlet(np.ones(3), size=3)
        s = gen.uniform(0.5, 1.0) * strength
        matrix = gen.uniform(0.8, 1.2, size=(3, 1)) * ((1.0 - s) * np.eye(3) + s * mix)
        bias = gen.uniform(-0.08, 0.08, size=3)
        gamma = float(np.exp(gen.uniform(np.log(0.7), np.log(1.4))))
        vignette = float(gen.uniform(0.2, 0.6)) if gen.random() >= 0.5 else 0.0
        return cls(
            matrix=tuple(tuple(float(v) for v in row) for row in matrix),  # type: ignore[arg-type]
            bias=tuple(float(v) for v in bias),  # type: ignore[arg-type]
            gamma=gamma,
            vignette=vignette,
        )

    def _stamp(
        self,
        images: torch.Tensor,
        *,
        foreground: torch.Tensor | None = None,
        rng: np.random.Generator | None = None,
    ) -> torch.Tensor:
        matrix = torch.tensor(self.matrix, dtype=images.dtype, device=images.device)
        bias = torch.tensor(self.bias, dtype=images.dtype, device=images.device)[None, :, None, None]
        out = (torch.einsum("ij,njhw->nihw", matrix, images) + bias).clamp(_EPS, 1.0) ** self.gamma
        if self.vignette > 0.0:
            h, w = images.shape[-2:]
            ys = (torch.arange(h, dtype=images.dtype, device=images.device) + 0.5) / h * 2.0 - 1.0
            xs = (torch.arange(w, dtype=images.dtype, device=images.device) + 0.5) / w * 2.0 - 1.0
            r2 = (ys[:, None] ** 2 + xs[None, :] ** 2) / 2.0
            out = out * (1.0 - self.vignette * r2)
        return out.clamp(0.0, 1.0)

    def to_config(self) -> dict[str, Any]:
        return {
            "type": self.type,
            "matrix": [list(row) for row in self.matrix],
            "bias": list(self.bias),
            "gamma": self.gamma,
            "vignette": self.vignette,
        }

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> ColorTransformFilter:
        check_config(config, cls, {"matrix", "bias", "gamma", "vignette"})
        return cls(
            matrix=tuple(tuple(float(v) for v in row) for row in config["matrix"]),  # type: ignore[arg-type]
            bias=tuple(float(v) for v in config["bias"]),  # type: ignore[arg-type]
            gamma=float(config["gamma"]),
            vignette=float(config["vignette"]),
        )
