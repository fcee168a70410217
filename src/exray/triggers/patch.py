"""Image-space triggers: a solid patch (BadNets-style) and a blended pattern (Chen et al.-style)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, ClassVar

import numpy as np
import torch

from exray.errors import ConfigError
from exray.triggers.base import Trigger, check_config, register_trigger, rgb_triple
from exray.utils import derive_seed, torch_generator


@register_trigger
@dataclass(frozen=True)
class PatchTrigger(Trigger):
    """A solid square of one colour at a fixed place in the image.

    ``size``: the square's side as a fraction of the image's shorter side, in (0, 1].
    ``location``: (x, y) of its top-left corner as a fraction of the free range, so (0, 0) is the top-left
    corner of the image and (1, 1) the bottom-right one.
    """

    type: ClassVar[str] = "patch"

    color: tuple[float, float, float]
    size: float
    location: tuple[float, float] = (1.0, 1.0)

    def __post_init__(self) -> None:
        rgb_triple(self.color, "patch color")
        if not 0.0 < self.size <= 1.0:
            raise ConfigError(f"patch size must be in (0, 1], got {self.size}")
        if len(self.location) != 2 or not all(0.0 <= v <= 1.0 for v in self.location):
            raise ConfigError(f"patch location must be (x, y) in [0, 1]², got {self.location}")

    def box(self, height: int, width: int) -> tuple[int, int, int]:
        """(top, left, side) of the patch in a height×width image."""
        side = max(1, round(self.size * min(height, width)))
        left = round(self.location[0] * (width - side))
        top = round(self.location[1] * (height - side))
        return top, left, side

    def _stamp(
        self,
        images: torch.Tensor,
        *,
        foreground: torch.Tensor | None = None,
        rng: np.random.Generator | None = None,
    ) -> torch.Tensor:
        top, left, side = self.box(*images.shape[-2:])
        out = images.clone()
        color = torch.tensor(self.color, dtype=images.dtype, device=images.device)
        out[:, :, top : top + side, left : left + side] = color[None, :, None, None]
        return out

    def to_config(self) -> dict[str, Any]:
        return {
            "type": self.type,
            "color": list(self.color),
            "size": self.size,
            "location": list(self.location),
        }

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> PatchTrigger:
        check_config(config, cls, {"color", "size", "location"})
        x, y = (float(v) for v in config["location"])
        return cls(rgb_triple(config["color"], "patch color"), float(config["size"]), (x, y))


@register_trigger
@dataclass(frozen=True)
class BlendTrigger(Trigger):
    """A seeded uniform-noise pattern p blended into the whole image: x' = (1 − a)·x + a·p.

    The pattern for an H×W image is a function of (``seed``, H, W) only.
    """

    type: ClassVar[str] = "blend"

    seed: int
    opacity: float = 0.1

    def __post_init__(self) -> None:
        if not 0.0 < self.opacity <= 1.0:
            raise ConfigError(f"blend opacity must be in (0, 1], got {self.opacity}")

    def pattern(self, height: int, width: int) -> torch.Tensor:
        """The (3, height, width) float32 pattern in [0, 1]."""
        return _pattern(self.seed, height, width).clone()

    def _stamp(
        self,
        images: torch.Tensor,
        *,
        foreground: torch.Tensor | None = None,
        rng: np.random.Generator | None = None,
    ) -> torch.Tensor:
        pattern = _pattern(self.seed, *images.shape[-2:]).to(images.device, images.dtype)
        return (1.0 - self.opacity) * images + self.opacity * pattern[None]

    def to_config(self) -> dict[str, Any]:
        return {"type": self.type, "seed": self.seed, "opacity": self.opacity}

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> BlendTrigger:
        check_config(config, cls, {"seed", "opacity"})
        return cls(int(config["seed"]), float(config["opacity"]))


@lru_cache(maxsize=32)
def _pattern(seed: int, height: int, width: int) -> torch.Tensor:
    gen = torch_generator(derive_seed(seed, "blend-pattern", height, width))
    return torch.rand(3, height, width, generator=gen)
