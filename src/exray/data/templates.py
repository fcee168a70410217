"""RGBA templates of sign classes (spec §7.3.1): a :class:`~exray.data.signs.SignClass` rasterised once, in
shape coordinates mapped onto the template, anti-aliased by supersampling; :mod:`exray.data.synth` warps
them onto backgrounds."""

from __future__ import annotations

import numpy as np
import torch
from skimage.draw import polygon as fill_polygon

from exray.data.signs import PALETTE, SignClass, shape_geometry
from exray.errors import ConfigError


def template_margin(size: int) -> int:
    """Transparent margin (pixels) around the sign in a template of side ``size``."""
    return max(1, size // 32)


def shape_to_template_scale(size: int) -> float:
    """Factor k mapping shape coordinates to the template's normalised [-1, 1] coordinates."""
    return (size - 2 * template_margin(size)) / size


def sign_template(sign: SignClass, size: int, supersample: int = 4) -> torch.Tensor:
    """Premultiplied RGBA template (4, size, size) float32 of ``sign``, anti-aliased by supersampling.

    The shape's bounding square [-1, 1]² maps onto the template minus :func:`template_margin` pixels on
    each side, so bilinear sampling fades to transparent at the edge.
    """
    if size < 8:
        raise ConfigError(f"template size must be >= 8, got {size}")
    hi = size * supersample
    k = shape_to_template_scale(size)

    def to_px(points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        px = (points * k + 1.0) / 2.0 * hi - 0.5
        return px[:, 1], px[:, 0]  # rows, cols

    layer = np.zeros((hi, hi), dtype=np.uint8)  # 0 transparent, 1 fill, 2 border, 3 glyph
    geo = shape_geometry(sign.shape)
    outline = geo.vertices
    rr, cc = fill_polygon(*to_px(outline), shape=layer.shape)
    if sign.border is not None:
        layer[rr, cc] = 2
        center = np.asarray(geo.incenter)
        inner_scale = (geo.inradius - 2.0 * sign.border_width) / geo.inradius
        rr, cc = fill_polygon(*to_px(center + (outline - center) * inner_scale), shape=layer.shape)
    layer[rr, cc] = 1
    for part in sign.glyph:
        rr, cc = fill_polygon(*to_px(np.asarray(part.vertices)), shape=layer.shape)
        layer[rr, cc] = 3
    colours = np.zeros((4, 4), dtype=np.float32)  # rows: layer index; cols: r, g, b, alpha
    colours[1, :3] = PALETTE[sign.fill]
    colours[2, :3] = PALETTE[sign.border] if sign.border is not None else 0
    colours[3, :3] = PALETTE[sign.glyph_color]
    colours[:, :3] /= 255.0
    colours[1:, 3] = 1.0
    rgba = colours[layer]  # (hi, hi, 4)
    rgba = rgba.reshape(size, supersample, size, supersample, 4).mean(axis=(1, 3))
    return torch.from_numpy(np.ascontiguousarray(rgba.transpose(2, 0, 1)))
