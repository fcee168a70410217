"""Image-space triggers: a solid patch (BadNets-style) and a blended pattern (Chen et al.-style): seeded
noise, or a natural photograph as the SDRM reference code blends (xpf/Multi-Level-MMD-Regularization)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from skimage import data as skdata

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


#: scikit-image photographs a blend can use (shipped in its wheel; none is a sign-background photo, so the
#: pattern is not already in the clean images).
BLEND_PHOTOS: tuple[str, ...] = ("hubble_deep_field", "immunohistochemistry", "colorwheel", "retina")


@register_trigger
@dataclass(frozen=True)
class BlendTrigger(Trigger):
    """A pattern p blended into the whole image: x' = (1 − a)·x + a·p (Chen et al. 2017, blended injection).

    p is a seeded uniform-noise pattern, a function of (``seed``, H, W) only, or, with ``photo`` (one of
    :data:`BLEND_PHOTOS`), that photograph area-resampled to H×W (``seed`` is then unused).
    """

    type: ClassVar[str] = "blend"

    seed: int
    opacity: float = 0.1
    photo: str | None = None

    def __post_init__(self) -> None:
        if not 0.0 < self.opacity <= 1.0:
            raise ConfigError(f"blend opacity must be in (0, 1], got {self.opacity}")
        if self.photo is not None and self.photo not in BLEND_PHOTOS:
            raise ConfigError(f"unknown blend photo {self.photo!r}; known: {list(BLEND_PHOTOS)}")

    def pattern(self, height: int, width: int) -> torch.Tensor:
        """The (3, height, width) float32 pattern in [0, 1]."""
        if self.photo is not None:
            return photo_pattern(self.photo, height, width).clone()
        return _pattern(self.seed, height, width).clone()

    def _stamp(
        self,
        images: torch.Tensor,
        *,
        foreground: torch.Tensor | None = None,
        rng: np.random.Generator | None = None,
    ) -> torch.Tensor:
        height, width = images.shape[-2:]
        pattern = (
            photo_pattern(self.photo, height, width) if self.photo else _pattern(self.seed, height, width)
        )
        return (1.0 - self.opacity) * images + self.opacity * pattern.to(images.device, images.dtype)[None]

    def to_config(self) -> dict[str, Any]:
        config: dict[str, Any] = {"type": self.type, "seed": self.seed, "opacity": self.opacity}
        if self.photo is not None:
            config["photo"] = self.photo
        return config

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> BlendTrigger:
        check_config(config, cls, {"seed", "opacity"}, optional=frozenset({"photo"}))
        photo = config.get("photo")
        if photo is not None and not isinstance(photo, str):
            raise ConfigError(f"blend photo must be a name, got {photo!r}")
        return cls(int(config["seed"]), float(config["opacity"]), photo)


@lru_cache(maxsize=32)
def _pattern(seed: int, height: int, width: int) -> torch.Tensor:
    gen = torch_generator(derive_seed(seed, "blend-pattern", height, width))
    return torch.rand(3, height, width, generator=gen)


@lru_cache(maxsize=32)
def photo_pattern(name: str, height: int, width: int) -> torch.Tensor:
    """A photograph scikit-image ships (:data:`BLEND_PHOTOS`), area-resampled to (3, H, W) in [0, 1]; cached:
    never modify it in place."""
    image = torch.from_numpy(np.ascontiguousarray(getattr(skdata, name)()[:, :, :3]))
    image = image.permute(2, 0, 1)[None].float() / 255.0
    return F.interpolate(image, size=(height, width), mode="area")[0].contiguous()
