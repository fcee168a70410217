"""The TrojAI polygon trigger (spec §7.3.5, after the TrojAI ``polygon_trigger`` generator).

Shape: n sides uniform in 3..12; n points uniform in [0.1, 0.9]², sorted by angle around their centroid,
rescaled so their bounding box fills the unit square; filled with one uniform random RGB colour. The
trigger's ``size`` is its filled area as a fraction of the foreground (sign) area (2–25 % in TrojAI
rounds 2–4). Each stamp goes to a random position *inside* the foreground mask; with a spatial condition
(round 4) only inside one quadrant of the foreground's bounding box.

When a stamp cannot fit entirely inside the allowed region (a large polygon in a small quadrant, or in a
thin triangle), the position with the largest overlap is used and the stamp is clipped to the region,
so it never leaves the foreground.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, ClassVar

import numpy as np
import torch
from scipy.signal import fftconvolve
from skimage.draw import polygon as fill_polygon

from exray.errors import ConfigError, InputError
from exray.triggers.base import (
    Trigger,
    check_config,
    foreground_masks,
    register_trigger,
    rgb_triple,
)

#: Spatial conditions: a quadrant of the foreground's bounding box.
REGIONS: tuple[str, ...] = ("top_left", "top_right", "bottom_left", "bottom_right")

SIDES_RANGE = (3, 12)
_MIN_UNIT_AREA = 0.1  # redraw slivers: the polygon must fill at least this much of its bounding square
_RASTER_SUPERSAMPLE = 4


def _shoelace(points: np.ndarray) -> float:
    x, y = points[:, 0], points[:, 1]
    return 0.5 * abs(float(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1))))


@register_trigger
@dataclass(frozen=True)
class PolygonTrigger(Trigger):
    """A filled polygon of one colour stamped inside the foreground object.

    ``vertices``: (x, y) points in the unit square (y down), whose bounding box fills it.
    ``color``: RGB in [0, 1]. ``size``: polygon area / foreground area, in (0, 1).
    ``region``: ``None`` or one of :data:`REGIONS` (the round-4 spatial condition).
    """

    type: ClassVar[str] = "polygon"
    stamps_foreground: ClassVar[bool] = True

    vertices: tuple[tuple[float, float], ...]
    color: tuple[float, float, float]
    size: float
    region: str | None = None

    def __post_init__(self) -> None:
        if len(self.vertices) < 3:
            raise ConfigError(f"a polygon needs at least 3 vertices, got {len(self.vertices)}")
        if not all(len(v) == 2 and 0.0 <= v[0] <= 1.0 and 0.0 <= v[1] <= 1.0 for v in self.vertices):
            raise ConfigError("polygon vertices must be (x, y) pairs in the unit square")
        if self.unit_area <= 0.0:
            raise ConfigError("polygon vertices enclose no area")
        rgb_triple(self.color, "polygon color")
        if not 0.0 < self.size < 1.0:
            raise ConfigError(
                f"polygon size (fraction of the foreground area) must be in (0, 1), got {self.size}"
            )
        if self.region is not None and self.region not in REGIONS:
            raise ConfigError(f"unknown polygon region {self.region!r}; known: {list(REGIONS)} or None")

    @classmethod
    def random(
        cls,
        rng: int | np.random.Generator,
        *,
        size_range: tuple[float, float] = (0.02, 0.25),
        region: str | None = None,
    ) -> PolygonTrigger:
        """Draw a polygon trigger by the TrojAI recipe (spec §7.3.5) from a seed or generator."""
        lo, hi = size_range
        if not 0.0 < lo <= hi < 1.0:
            raise ConfigError(f"size_range must satisfy 0 < lo <= hi < 1, got {size_range}")
        gen = np.random.default_rng(rng)
        n_sides = int(gen.integers(SIDES_RANGE[0], SIDES_RANGE[1] + 1))
        while True:
            points = gen.uniform(0.1, 0.9, size=(n_sides, 2))
            centroid = points.mean(axis=0)
            order = np.argsort(np.arctan2(points[:, 1] - centroid[1], points[:, 0] - centroid[0]))
            points = points[order]
            span = points.max(axis=0) - points.min(axis=0)
            points = (points - points.min(axis=0)) / span
            if _shoelace(points) >= _MIN_UNIT_AREA:
                break
        color = tuple(int(c) / 255.0 for c in gen.integers(0, 256, size=3))
        return cls(
            vertices=tuple((float(x), float(y)) for x, y in points),
            color=color,  # type: ignore[arg-type]
            size=float(gen.uniform(lo, hi)),
            region=region,
        )

    @property
    def sides(self) -> int:
        return len(self.vertices)

    @property
    def unit_area(self) -> float:
        """Area of the polygon in its unit square."""
        return _shoelace(np.asarray(self.vertices))

    def raster(self, side: int) -> np.ndarray:
        """The polygon rasterised into a side×side bool mask (pixels at least half covered)."""
        return _raster(self.vertices, side).copy()

    def stamp_mask(self, foreground: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """A (H, W) bool mask of the pixels one stamp covers inside the (H, W) bool ``foreground``."""
        if not foreground.any():
            raise InputError("cannot place a polygon trigger: the foreground mask is empty")
        side, poly, candidates = _placements(self, foreground.tobytes(), foreground.shape)
        flat = int(candidates[rng.integers(candidates.size)])
        width = foreground.shape[1] - side + 1
        row, col = divmod(flat, width)
        stamp = np.zeros_like(foreground)
        stamp[row : row + side, col : col + side] = poly
        return stamp & _region_mask(foreground, self.region)

    def _stamp(
        self,
        images: torch.Tensor,
        *,
        foreground: torch.Tensor | None = None,
        rng: np.random.Generator | None = None,
    ) -> torch.Tensor:
        """Stamp one polygon per image at a random position inside its foreground mask."""
        masks = foreground_masks(foreground, images).cpu().numpy()
        gen = rng if rng is not None else np.random.default_rng(0)
        out = images.clone()
        color = torch.tensor(self.color, dtype=images.dtype, device=images.device)[:, None]
        for i in range(images.shape[0]):
            stamp = torch.from_numpy(self.stamp_mask(masks[i], gen)).to(images.device)
            out[i][:, stamp] = color
        return out

    def to_config(self) -> dict[str, Any]:
        return {
            "type": self.type,
            "vertices": [list(v) for v in self.vertices],
            "color": list(self.color),
            "size": self.size,
            "region": self.region,
        }

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> PolygonTrigger:
        check_config(config, cls, {"vertices", "color", "size"}, frozenset({"region"}))
        return cls(
            vertices=tuple((float(x), float(y)) for x, y in config["vertices"]),
            color=rgb_triple(config["color"], "polygon color"),
            size=float(config["size"]),
            region=config.get("region"),
        )


@lru_cache(maxsize=256)
def _raster(vertices: tuple[tuple[float, float], ...], side: int) -> np.ndarray:
    hi = side * _RASTER_SUPERSAMPLE
    pts = np.asarray(vertices) * hi - 0.5
    canvas = np.zeros((hi, hi), dtype=np.float32)
    rr, cc = fill_polygon(pts[:, 1], pts[:, 0], shape=canvas.shape)
    canvas[rr, cc] = 1.0
    coverage = canvas.reshape(side, _RASTER_SUPERSAMPLE, side, _RASTER_SUPERSAMPLE).mean(axis=(1, 3))
    mask = coverage >= 0.5
    if not mask.any():  # a polygon smaller than a pixel still stamps its most covered pixel
        mask.flat[int(np.argmax(coverage))] = True
    return mask


def _region_mask(foreground: np.ndarray, region: str | None) -> np.ndarray:
    """``foreground`` restricted to a quadrant of its bounding box (all of it when ``region`` is None)."""
    if region is None:
        return foreground
    rows = np.flatnonzero(foreground.any(axis=1))
    cols = np.flatnonzero(foreground.any(axis=0))
    mid_r = (rows[0] + rows[-1] + 1) / 2.0
    mid_c = (cols[0] + cols[-1] + 1) / 2.0
    r = np.arange(foreground.shape[0])[:, None] + 0.5
    c = np.arange(foreground.shape[1])[None, :] + 0.5
    in_rows = r < mid_r if region.startswith("top") else r > mid_r
    in_cols = c < mid_c if region.endswith("left") else c > mid_c
    return foreground & in_rows & in_cols


@lru_cache(maxsize=128)
def _placements(
    trigger: PolygonTrigger, mask_bytes: bytes, shape: tuple[int, int]
) -> tuple[int, np.ndarray, np.ndarray]:
    """(side, polygon raster, flat top-left positions) for stamping ``trigger`` into a mask.

    Cached on the mask's bytes: a generator stamps many copies of the same sign template.
    """
    foreground = np.frombuffer(mask_bytes, dtype=bool).reshape(shape)
    allowed = _region_mask(foreground, trigger.region)
    area = float(foreground.sum())
    side = round(math.sqrt(trigger.size * area / trigger.unit_area))
    side = int(min(max(side, 1), *shape))
    poly = _raster(trigger.vertices, side)
    overlap = fftconvolve(allowed.astype(np.float64), poly[::-1, ::-1].astype(np.float64), mode="valid")
    overlap = np.rint(overlap)
    best = overlap.max()
    if best <= 0:  # only possible when the allowed region is empty (a degenerate quadrant)
        raise InputError(f"cannot place a polygon trigger in region {trigger.region!r} of this foreground")
    target = min(best, float(poly.sum()))
    candidates = np.flatnonzero(overlap.ravel() >= target)
    return side, poly, candidates
