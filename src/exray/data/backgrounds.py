"""Backgrounds for the synthetic sign generator (spec §7.3.2).

Two sources, mixed per sample:

* random crops of the photographs that scikit-image ships in its wheel (no download), decoded once per
  process and cached at a resolution matched to the render size;
* procedural road scenes: a sky gradient, a skyline of blocky buildings, a textured ground, a gray road
  trapezoid with edge lines and dashed centre marks.

Everything is batched with torch; all random numbers come from the caller's ``numpy.random.Generator``
(bulk noise from a ``torch.Generator`` seeded by it), so a seed fixes the pixels exactly.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import torch
import torch.nn.functional as F
from skimage import data as skdata

#: scikit-image sample photographs used as backgrounds (all shipped inside the wheel).
PHOTO_NAMES: tuple[str, ...] = (
    "astronaut",
    "chelsea",
    "coffee",
    "rocket",
    "motorcycle",
    "camera",
    "grass",
    "gravel",
    "brick",
    "moon",
)

_CROP_FRACTION = (0.35, 1.0)  # crop side / photo short side
_PHOTO_GAIN = (0.8, 1.2)  # per-channel colour gain of a crop
_SKY_COLOURS = np.array([[0.35, 0.55, 0.85], [0.62, 0.66, 0.72], [0.55, 0.45, 0.62], [0.80, 0.62, 0.45]])
_GROUND_COLOURS = np.array([[0.25, 0.45, 0.20], [0.45, 0.38, 0.25], [0.45, 0.45, 0.45], [0.30, 0.35, 0.18]])
_LANE_COLOURS = np.array([[0.92, 0.92, 0.92], [0.95, 0.80, 0.20]])


def _load_photo(name: str) -> np.ndarray:
    image = skdata.stereo_motorcycle()[0] if name == "motorcycle" else getattr(skdata, name)()
    if image.ndim == 2:
        image = np.repeat(image[:, :, None], 3, axis=2)
    return image[:, :, :3]


@lru_cache(maxsize=8)
def photo_bank(short_side: int) -> tuple[torch.Tensor, ...]:
    """The background photos as float32 (1, 3, h, w) tensors in [0, 1], area-downscaled so that their
    short side is at most ``short_side`` (cached per size)."""
    photos = []
    for name in PHOTO_NAMES:
        image = torch.from_numpy(_load_photo(name)).permute(2, 0, 1)[None].float() / 255.0
        h, w = image.shape[-2:]
        factor = short_side / min(h, w)
        if factor < 1.0:
            image = F.interpolate(image, size=(round(h * factor), round(w * factor)), mode="area")
        photos.append(image.contiguous())
    return tuple(photos)


def _base_grid(size: int) -> torch.Tensor:
    """Normalised pixel-centre coordinates (align_corners=False) of a size×size image: (size, size, 2)."""
    coords = (torch.arange(size, dtype=torch.float32) * 2.0 + 1.0) / size - 1.0
    gy, gx = torch.meshgrid(coords, coords, indexing="ij")
    return torch.stack([gx, gy], dim=-1)


def photo_crops(n: int, size: int, rng: np.random.Generator) -> torch.Tensor:
    """``n`` random crops (random photo, crop side, position, left-right flip, colour gain) resampled to
    ``size``×``size``: (n, 3, size, size) float32."""
    bank = photo_bank(2 * size)
    which = rng.integers(len(bank), size=n)
    frac = rng.uniform(*_CROP_FRACTION, size=n)
    pos = rng.uniform(-1.0, 1.0, size=(n, 2))
    flip = np.where(rng.random(n) < 0.5, -1.0, 1.0)
    gain = rng.uniform(*_PHOTO_GAIN, size=(n, 3))
    base = _base_grid(size)
    out = torch.empty(n, 3, size, size)
    for k, photo in enumerate(bank):
        idx = np.flatnonzero(which == k)
        if idx.size == 0:
            continue
        h, w = photo.shape[-2:]
        crop = frac[idx] * min(h, w)
        half = np.stack([crop / w, crop / h], axis=1)  # half-extent of the crop in normalised units
        center = pos[idx] * (1.0 - half)
        scale = half * np.stack([flip[idx], np.ones(idx.size)], axis=1)
        grid = (
            base[None] * torch.from_numpy(scale).float()[:, None, None]
            + torch.from_numpy(center).float()[:, None, None]
        )
        sampled = F.grid_sample(
            photo, grid.reshape(1, idx.size * size, size, 2), mode="bilinear", align_corners=False
        )
        out[torch.from_numpy(idx)] = sampled.reshape(3, idx.size, size, size).permute(1, 0, 2, 3)
    out *= torch.from_numpy(gain).float()[:, :, None, None]
    return out.clamp_(0.0, 1.0)


def _smooth_noise(n: int, size: int, cells: int, gen: torch.Generator) -> torch.Tensor:
    """Zero-mean value noise: a cells×cells Gaussian grid upsampled bilinearly to size×size."""
    coarse = torch.randn(n, 1, cells, cells, generator=gen)
    return F.interpolate(coarse, size=(size, size), mode="bilinear", align_corners=False)


def _pick(colours: np.ndarray, n: int, jitter: float, rng: np.random.Generator) -> torch.Tensor:
    chosen = colours[rng.integers(len(colours), size=n)] + rng.uniform(-jitter, jitter, size=(n, 3))
    return torch.from_numpy(np.clip(chosen, 0.0, 1.0)).float()[:, :, None, None]


def _col(values: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(values).float()[:, None, None, None]


def road_scenes(n: int, size: int, rng: np.random.Generator) -> torch.Tensor:
    """``n`` procedural road scenes, (n, 3, size, size) float32 in [0, 1]."""
    gen = torch.Generator().manual_seed(int(rng.integers(2**63)))
    coords = (torch.arange(size, dtype=torch.float32) + 0.5) / size
    y = coords[None, None, :, None]
    x = coords[None, None, None, :]
    horizon = _col(rng.uniform(0.3, 0.6, n))

    sky_top = _pick(_SKY_COLOURS, n, 0.08, rng)
    sky_low = sky_top + 0.45 * (1.0 - sky_top)
    t_sky = (y / horizon).clamp(max=1.0)
    image = sky_top + (sky_low - sky_top) * t_sky + 0.03 * _smooth_noise(n, size, 4, gen)

    # Skyline: blocky buildings above the horizon (heights are nearest-upsampled 1-D noise).
    cols = int(rng.integers(4, 12))
    heights = torch.rand(n, 1, 1, cols, generator=gen) * _col(rng.uniform(0.0, 0.3, n))
    heights = F.interpolate(heights, size=(1, size), mode="nearest")
    building = (y > horizon - heights) & (y <= horizon)
    building_colour = _pick(_GROUND_COLOURS[2:3], n, 0.15, rng)
    texture = 1.0 + 0.12 * _smooth_noise(n, size, max(4, size // 4), gen)
    image = torch.where(building, building_colour * texture, image)

    ground_colour = _pick(_GROUND_COLOURS, n, 0.08, rng)
    ground_texture = 1.0 + 0.2 * _smooth_noise(n, size, 8, gen) + 0.1 * _smooth_noise(n, size, size // 2, gen)
    image = torch.where(y > horizon, ground_colour * ground_texture, image)

    # Road trapezoid towards a vanishing point on the horizon; t = 0 at the horizon, 1 at the bottom.
    t = ((y - horizon) / (1.0 - horizon)).clamp(min=0.0)
    vanish = _col(rng.uniform(0.3, 0.7, n))
    bottom = _col(rng.uniform(0.2, 0.8, n))
    half_width = _col(rng.uniform(0.3, 0.7, n)) * t
    offset = (x - (vanish + (bottom - vanish) * t)).abs()
    road = (y > horizon) & (offset < half_width)
    road_grey = _col(rng.uniform(0.25, 0.5, n))
    road_texture = 1.0 + 0.08 * torch.randn(n, 1, size, size, generator=gen)
    image = torch.where(road, road_grey * road_texture, image)
    edge_line = road & (offset > 0.9 * half_width) & (offset < 0.96 * half_width)
    dash_phase = _col(rng.uniform(0.0, 1.0, n))
    dashes = torch.frac(_col(rng.uniform(0.8, 1.5, n)) / (t + 0.1) + dash_phase) < 0.5
    centre_line = road & (offset < 0.03 * t) & dashes
    lane_colour = _pick(_LANE_COLOURS, n, 0.03, rng)
    image = torch.where(edge_line | centre_line, lane_colour, image)

    image = image * _col(rng.uniform(0.7, 1.2, n))
    return image.clamp_(0.0, 1.0)


def backgrounds(n: int, size: int, rng: np.random.Generator, photo_fraction: float = 0.5) -> torch.Tensor:
    """``n`` backgrounds, each a photo crop with probability ``photo_fraction`` and a road scene otherwise:
    (n, 3, size, size) float32 in [0, 1]."""
    is_photo = rng.random(n) < photo_fraction
    out = torch.empty(n, 3, size, size)
    photo_idx = np.flatnonzero(is_photo)
    road_idx = np.flatnonzero(~is_photo)
    if photo_idx.size:
        out[torch.from_numpy(photo_idx)] = photo_crops(photo_idx.size, size, rng)
    if road_idx.size:
        out[torch.from_numpy(road_idx)] = road_scenes(road_idx.size, size, rng)
    return out
