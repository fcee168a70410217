"""The reflection trigger (Liu et al., "Reflection Backdoor", ECCV 2020; issue 19 §1).

Refool adds a reflection R to the image B with one of three physical models, here on images in [0, 1] and
mixed at ``weight`` w so that the result stays an image: x' = clip((1 − w)·B + w·R', 0, 1), with

* ``mode="focus"`` — both layers in focus: R' = R;
* ``mode="blur"`` — the reflection out of focus: R' = R convolved with a Gaussian of ``sigma`` pixels;
* ``mode="ghost"`` — a double reflection from both sides of the glass: R' = (R + a·R shifted by
  ``offset`` (a fraction of the image's height and width)) / (1 + a), a = ``ghost``.

R is a photograph that scikit-image ships (:data:`~exray.triggers.patch.BLEND_PHOTOS`), area-resampled to
the image size: no download. The paper draws its reflections from a set of images and poisons target-class
images clean-label; the zoo and studies choose the poisoning (``exray.attacks``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import numpy as np
import torch
import torch.nn.functional as F

from exray.errors import ConfigError
from exray.triggers.base import Trigger, check_config, register_trigger
from exray.triggers.patch import BLEND_PHOTOS, photo_pattern

Mode = Literal["focus", "blur", "ghost"]


@register_trigger
@dataclass(frozen=True)
class ReflectionTrigger(Trigger):
    """A photograph added as a reflection (module docstring)."""

    type: ClassVar[str] = "reflection"

    photo: str = "hubble_deep_field"
    mode: Mode = "ghost"
    weight: float = 0.3
    sigma: float = 1.5
    ghost: float = 0.6
    offset: tuple[float, float] = (0.05, 0.05)

    def __post_init__(self) -> None:
        object.__setattr__(self, "offset", tuple(float(v) for v in self.offset))
        if self.photo not in BLEND_PHOTOS:
            raise ConfigError(f"unknown reflection photo {self.photo!r}; known: {list(BLEND_PHOTOS)}")
        if self.mode not in ("focus", "blur", "ghost"):
            raise ConfigError(f"reflection mode must be 'focus', 'blur' or 'ghost', got {self.mode!r}")
        if not 0.0 < self.weight <= 1.0:
            raise ConfigError(f"reflection weight must be in (0, 1], got {self.weight}")
        if not 0.0 < self.sigma <= 16.0:
            raise ConfigError(f"reflection sigma must be in (0, 16] pixels, got {self.sigma}")
        if not 0.0 <= self.ghost <= 1.0:
            raise ConfigError(f"ghost attenuation must be in [0, 1], got {self.ghost}")
        if len(self.offset) != 2 or not all(-0.5 <= v <= 0.5 for v in self.offset):
            raise ConfigError(f"ghost offset must be two fractions in [-0.5, 0.5], got {self.offset}")

    def reflection(self, height: int, width: int) -> torch.Tensor:
        """R', the (3, H, W) reflection layer in [0, 1] that is mixed into every image."""
        r = photo_pattern(self.photo, height, width)
        if self.mode == "blur":
            return _gaussian(r, self.sigma)
        if self.mode == "ghost":
            dy, dx = round(self.offset[0] * height), round(self.offset[1] * width)
            return (r + self.ghost * torch.roll(r, shifts=(dy, dx), dims=(1, 2))) / (1.0 + self.ghost)
        return r.clone()

    def _stamp(
        self,
        images: torch.Tensor,
        *,
        foreground: torch.Tensor | None = None,
        rng: np.random.Generator | None = None,
    ) -> torch.Tensor:
        layer = self.reflection(*images.shape[-2:]).to(images.device, images.dtype)[None]
        return ((1.0 - self.weight) * images + self.weight * layer).clamp(0.0, 1.0)

    def to_config(self) -> dict[str, Any]:
        return {
            "type": self.type,
            "photo": self.photo,
            "mode": self.mode,
            "weight": self.weight,
            "sigma": self.sigma,
            "ghost": self.ghost,
            "offset": list(self.offset),
        }

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> ReflectionTrigger:
        check_config(config, cls, {"photo", "mode", "weight", "sigma", "ghost", "offset"})
        offset = config["offset"]
        if not isinstance(offset, list | tuple):
            raise ConfigError(f"reflection offset must be a pair, got {offset!r}")
        return cls(
            str(config["photo"]),
            config["mode"],
            float(config["weight"]),
            float(config["sigma"]),
            float(config["ghost"]),
            tuple(float(v) for v in offset),
        )


def _gaussian(image: torch.Tensor, sigma: float) -> torch.Tensor:
    """A separable Gaussian blur of a (3, H, W) image (reflected borders)."""
    radius = max(1, math.ceil(3 * sigma))
    taps = torch.exp(-0.5 * (torch.arange(-radius, radius + 1, dtype=torch.float32) / sigma) ** 2)
    taps = (taps / taps.sum()).to(image.dtype)
    x = F.pad(image[None], (radius, radius, radius, radius), mode="reflect")
    x = F.conv2d(x, taps.view(1, 1, 1, -1).expand(3, 1, 1, -1), groups=3)
    return F.conv2d(x, taps.view(1, 1, -1, 1).expand(3, 1, -1, 1), groups=3)[0]
