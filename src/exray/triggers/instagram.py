"""The five Instagram-style filter triggers of TrojAI rounds 2–4, on torch tensors (spec §7.3.6, after IGX).

No ImageMagick: each recipe is a chain of the operations in :mod:`exray.triggers.color_ops`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch

import exray.triggers.color_ops as ops
from exray.errors import ConfigError
from exray.triggers.base import Trigger, check_config, register_trigger


def gotham(images: torch.Tensor) -> torch.Tensor:
    """modulate(120, 10, 100) → colorize #222b6d 20 % → gamma 0.9 → sigmoidal contrast 3 @ 50 % ×2."""
    x = ops.modulate(images, 120.0, 10.0, 100.0)
    x = ops.colorize(x, ops.hex_rgb("#222b6d"), 0.2)
    x = ops.gamma(x, 0.9)
    return ops.sigmoidal_contrast(ops.sigmoidal_contrast(x, 3.0, 0.5), 3.0, 0.5)


def nashville(images: torch.Tensor) -> torch.Tensor:
    """colortone #222b6d on the shadows 50 % → colortone #f7daae on the highlights 50 % → sigmoidal
    contrast 3 @ 50 % → saturation 150 % → auto-gamma."""
    x = ops.colortone(images, ops.hex_rgb("#222b6d"), 0.5, shadows=True)
    x = ops.colortone(x, ops.hex_rgb("#f7daae"), 0.5, shadows=False)
    x = ops.sigmoidal_contrast(x, 3.0, 0.5)
    x = ops.modulate(x, 100.0, 150.0, 100.0)
    return ops.auto_gamma(x)


def kelvin(images: torch.Tensor) -> torch.Tensor:
    """auto-gamma → modulate(120, 50, 100) → #ff9900 over the image at opacity 0.2."""
    x = ops.auto_gamma(images)
    x = ops.modulate(x, 120.0, 50.0, 100.0)
    return ops.colorize(x, ops.hex_rgb("#ff9900"), 0.2)


def lomo(images: torch.Tensor) -> torch.Tensor:
    """level black point 0.5 on R and G → vignette (none → black)."""
    x = ops.level(images, black=0.5, channels=(0, 1))
    return ops.vignette(x, ops.NONE, (0.0, 0.0, 0.0, 1.0))


def toaster(images: torch.Tensor) -> torch.Tensor:
    """colortone #330000 on the shadows 50 % → modulate(150, 80, 100) → gamma 1.2 → sigmoidal contrast
    3 @ 50 % ×2 → vignette (none → LavenderBlush3) → vignette (#ff9966 → none)."""
    x = ops.colortone(images, ops.hex_rgb("#330000"), 0.5, shadows=True)
    x = ops.modulate(x, 150.0, 80.0, 100.0)
    x = ops.gamma(x, 1.2)
    x = ops.sigmoidal_contrast(ops.sigmoidal_contrast(x, 3.0, 0.5), 3.0, 0.5)
    x = ops.vignette(x, ops.NONE, ops.hex_rgba("#cdc1c5"))
    return ops.vignette(x, ops.hex_rgba("#ff9966"), ops.NONE)


INSTAGRAM_FILTERS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "gotham": gotham,
    "nashville": nashville,
    "kelvin": kelvin,
    "lomo": lomo,
    "toaster": toaster,
}


@register_trigger
@dataclass(frozen=True)
class InstagramFilter(Trigger):
    """One of the five TrojAI Instagram filters, applied to the whole image."""

    type: ClassVar[str] = "instagram"

    name: str

    def __post_init__(self) -> None:
        if self.name not in INSTAGRAM_FILTERS:
            raise ConfigError(f"unknown Instagram filter {self.name!r}; known: {list(INSTAGRAM_FILTERS)}")

    def _stamp(
        self,
        images: torch.Tensor,
        *,
        foreground: torch.Tensor | None = None,
        rng: np.random.Generator | None = None,
    ) -> torch.Tensor:
        return INSTAGRAM_FILTERS[self.name](images).clamp(0.0, 1.0)

    def to_config(self) -> dict[str, Any]:
        return {"type": self.type, "name": self.name}

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> InstagramFilter:
        check_config(config, cls, {"name"})
        return cls(str(config["name"]))
