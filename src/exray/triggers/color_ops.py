"""Differentiable torch versions of the ImageMagick operations the Instagram filters use (spec §7.3.6).

All functions take and return (N, 3, H, W) float tensors in [0, 1] and work per image. Percentages follow
ImageMagick's conventions where they have one (``modulate`` takes 100 = unchanged); blend amounts are
fractions in [0, 1].
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

_EPS = 1e-6
_LUMA = (0.299, 0.587, 0.114)  # ImageMagick 6 'gray' colourspace (Rec. 601 luma)

Rgba = tuple[float, float, float, float]
NONE: Rgba = (0.0, 0.0, 0.0, 0.0)  # ImageMagick's 'none': transparent black


def hex_rgb(code: str) -> tuple[float, float, float]:
    """'#rrggbb' → RGB in [0, 1]."""
    code = code.lstrip("#")
    return tuple(int(code[i : i + 2], 16) / 255.0 for i in (0, 2, 4))  # type: ignore[return-value]


def hex_rgba(code: str) -> Rgba:
    """'#rrggbb' → opaque RGBA in [0, 1]."""
    return (*hex_rgb(code), 1.0)


def _color(images: torch.Tensor, rgb: Sequence[float]) -> torch.Tensor:
    return torch.tensor(rgb, dtype=images.dtype, device=images.device)[None, :, None, None]


def luma(images: torch.Tensor) -> torch.Tensor:
    """Gray level (N, 1, H, W)."""
    return (images * _color(images, _LUMA)).sum(dim=1, keepdim=True)


def rgb_to_hsl(images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Hue (in turns, [0, 1)), saturation and lightness, each (N, 1, H, W)."""
    r, g, b = images[:, 0:1], images[:, 1:2], images[:, 2:3]
    cmax, _ = images.max(dim=1, keepdim=True)
    cmin, _ = images.min(dim=1, keepdim=True)
    delta = cmax - cmin
    light = (cmax + cmin) / 2.0
    sat = delta / (1.0 - (2.0 * light - 1.0).abs()).clamp(min=_EPS)
    safe = delta.clamp(min=_EPS)
    hue = torch.where(
        cmax == r,
        torch.remainder((g - b) / safe, 6.0),
        torch.where(cmax == g, (b - r) / safe + 2.0, (r - g) / safe + 4.0),
    )
    hue = torch.where(delta > 0, hue / 6.0, torch.zeros_like(hue))
    return hue, sat.clamp(0.0, 1.0), light


def hsl_to_rgb(hue: torch.Tensor, sat: torch.Tensor, light: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`rgb_to_hsl` (inputs clamped to the valid ranges)."""
    sat = sat.clamp(0.0, 1.0)
    light = light.clamp(0.0, 1.0)
    a = sat * torch.minimum(light, 1.0 - light)
    channels = []
    for n in (0.0, 8.0, 4.0):
        k = torch.remainder(n + hue * 12.0, 12.0)
        channels.append(light - a * torch.clamp(torch.minimum(k - 3.0, 9.0 - k), -1.0, 1.0))
    return torch.cat(channels, dim=1)


def modulate(
    images: torch.Tensor, brightness: float = 100.0, saturation: float = 100.0, hue: float = 100.0
) -> torch.Tensor:
    """ImageMagick ``-modulate B,S,H`` in HSL: scale lightness and saturation by B% and S%, rotate hue by
    (H − 100)·1.8 degrees."""
    h, s, l = rgb_to_hsl(images)
    h = torch.remainder(h + (hue - 100.0) / 200.0, 1.0)
    return hsl_to_rgb(h, s * saturation / 100.0, l * brightness / 100.0)


def colorize(images: torch.Tensor, rgb: Sequence[float], amount: float) -> torch.Tensor:
    """Blend every pixel toward a colour by ``amount`` (``-colorize``, or a translucent fill on top)."""
    return images + amount * (_color(images, rgb) - images)


def colortone(images: torch.Tensor, rgb: Sequence[float], amount: float, *, shadows: bool) -> torch.Tensor:
    """Blend toward a colour weighted by the gray level (highlights) or its inverse (``shadows=True``)."""
    weight = luma(images)
    if shadows:
        weight = 1.0 - weight
    return images + amount * weight * (_color(images, rgb) - images)


def gamma(images: torch.Tensor, value: float) -> torch.Tensor:
    """ImageMagick ``-gamma g``: v ↦ v^(1/g) (g < 1 darkens, g > 1 brightens)."""
    return images.clamp(min=_EPS) ** (1.0 / value)


def sigmoidal_contrast(images: torch.Tensor, strength: float = 3.0, midpoint: float = 0.5) -> torch.Tensor:
    """ImageMagick ``-sigmoidal-contrast strength,midpoint`` (sharpening), rescaled so 0 ↦ 0 and 1 ↦ 1."""

    def sig(x: torch.Tensor | float) -> torch.Tensor | float:
        if isinstance(x, torch.Tensor):
            return torch.sigmoid(strength * (x - midpoint))
        return 1.0 / (1.0 + math.exp(-strength * (x - midpoint)))

    lo, hi = sig(0.0), sig(1.0)
    return (sig(images) - lo) / (hi - lo)


def auto_gamma(images: torch.Tensor) -> torch.Tensor:
    """ImageMagick ``-auto-gamma`` (channels synchronised): one gamma per image that maps its mean to 0.5."""
    mean = images.mean(dim=(1, 2, 3), keepdim=True).clamp(_EPS, 1.0 - _EPS)
    exponent = math.log(0.5) / torch.log(mean)
    return images.clamp(min=_EPS) ** exponent


def level(
    images: torch.Tensor, black: float = 0.0, white: float = 1.0, channels: Sequence[int] = (0, 1, 2)
) -> torch.Tensor:
    """ImageMagick ``-level black,white`` on the given channels: v ↦ clip((v − black)/(white − black))."""
    leveled = ((images - black) / (white - black)).clamp(0.0, 1.0)
    pick = torch.zeros(1, 3, 1, 1, dtype=torch.bool, device=images.device)
    pick[:, list(channels)] = True
    return torch.where(pick, leveled, images)


def radial_distance(
    height: int, width: int, crop_factor: float, device: torch.device | None = None
) -> torch.Tensor:
    """Elliptical distance from the centre (1, 1, H, W): 1 at the edge of a gradient crop_factor× the image
    size (ImageMagick's radial-gradient), clamped to 1 beyond it."""
    ys = (torch.arange(height, dtype=torch.float32, device=device) + 0.5 - height / 2.0) / (
        crop_factor * height / 2.0
    )
    xs = (torch.arange(width, dtype=torch.float32, device=device) + 0.5 - width / 2.0) / (
        crop_factor * width / 2.0
    )
    dist = torch.sqrt(ys[:, None] ** 2 + xs[None, :] ** 2)
    return dist.clamp(max=1.0)[None, None]


def vignette(
    images: torch.Tensor, inner: Rgba = NONE, outer: Rgba = (0.0, 0.0, 0.0, 1.0), crop_factor: float = 1.5
) -> torch.Tensor:
    """Multiply-composite a radial RGBA gradient from ``inner`` (centre) to ``outer`` (edge), generated at
    ``crop_factor``× the image size and centre-cropped (the IGX vignette). Colour and alpha are interpolated
    straight, as ImageMagick's gradient does, so a pixel is scaled by 1 − α + α·colour."""
    t = radial_distance(images.shape[-2], images.shape[-1], crop_factor, images.device).to(images.dtype)
    inner_t = torch.tensor(inner, dtype=images.dtype, device=images.device)[None, :, None, None]
    outer_t = torch.tensor(outer, dtype=images.dtype, device=images.device)[None, :, None, None]
    grad = inner_t + (outer_t - inner_t) * t
    alpha = grad[:, 3:4]
    return images * (1.0 - alpha + alpha * grad[:, :3])
