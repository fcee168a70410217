"""Traffic-sign-like foreground classes: shapes, colours, glyphs, and their RGBA templates (spec §7.3.1).

A class is a :class:`SignClass`: a shape, a fill colour, an optional contrasting border and a central glyph
of 1–3 parts (polygons, bars, arrows) in a contrasting colour. Classes are drawn per model from a seed by
:func:`draw_classes`; ``confusion_pairs=k`` makes k pairs of classes share shape, fill, border and glyph
colour and differ only in the glyph's geometry — the "natural confusion" of two blue octagons in TrojAI
round-2 model #123 (EX-RAY paper, Fig. 2).

Geometry lives in *shape coordinates*: the sign's bounding square is [-1, 1]², y pointing down.
:func:`exray.data.templates.sign_template` rasterises a class once into a premultiplied RGBA tensor
(anti-aliased by 4× supersampling); the generator in :mod:`exray.data.synth` warps these templates onto
backgrounds.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from exray.errors import ConfigError
from exray.utils import derive_seed

#: Sign colours (sRGB, 0–255). Names are what class descriptions store.
PALETTE: dict[str, tuple[int, int, int]] = {
    "red": (200, 30, 35),
    "blue": (25, 70, 170),
    "yellow": (245, 205, 30),
    "white": (238, 238, 238),
    "green": (25, 125, 65),
    "black": (25, 25, 25),
    "orange": (240, 125, 25),
    "brown": (120, 70, 35),
}

#: The glyph colour a fill gets when classes must not differ by colour (``draw_classes(colour_cues=False)``):
#: one contrasting colour per fill, as on real signs (white on red and blue, black on white and yellow).
GLYPH_ON_FILL: dict[str, str] = {
    "red": "white",
    "blue": "white",
    "yellow": "black",
    "white": "black",
    "green": "white",
    "black": "white",
    "orange": "black",
    "brown": "white",
}

SHAPES: tuple[str, ...] = (
    "circle",
    "triangle",
    "inverted_triangle",
    "square",
    "diamond",
    "octagon",
    "pentagon",
)

GLYPH_KINDS: tuple[str, ...] = ("polygon", "bar", "arrow")

_MIN_LUMA_CONTRAST = 0.3
_BORDER_WIDTH = (0.04, 0.10)  # fraction of the sign's size (spec §7.3.1)
_BORDER_PROB = 0.5
_GLYPH_FILL = 0.8  # glyph disc radius as a fraction of the inner (border-free) in-radius


def _luma(name: str) -> float:
    r, g, b = (c / 255.0 for c in PALETTE[name])
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


def contrasting_colors(name: str) -> list[str]:
    """Palette colours whose luma differs from ``name``'s by at least 0.3, in palette order."""
    if name not in PALETTE:
        raise ConfigError(f"unknown colour {name!r}; known: {sorted(PALETTE)}")
    return [c for c in PALETTE if abs(_luma(c) - _luma(name)) >= _MIN_LUMA_CONTRAST]


@dataclass(frozen=True)
class ShapeGeometry:
    """Outline of a sign shape in shape coordinates, with its incircle (every shape here is tangential,
    so an inward border of width w is the outline scaled about the incentre by (r − w)/r)."""

    vertices: np.ndarray  # (V, 2) float64, (x, y)
    incenter: tuple[float, float]
    inradius: float

    @property
    def area(self) -> float:
        """Area of the outline in shape units (the bounding square has area 4)."""
        return polygon_area(self.vertices)


def polygon_area(vertices: np.ndarray) -> float:
    """Absolute area of a simple polygon given as (V, 2) vertices (shoelace formula)."""
    x, y = vertices[:, 0], vertices[:, 1]
    return 0.5 * abs(float(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1))))


def _regular(n: int, radius: float, start_deg: float, center_y: float = 0.0) -> np.ndarray:
    angles = np.deg2rad(start_deg + 360.0 * np.arange(n) / n)
    return np.stack([radius * np.cos(angles), center_y + radius * np.sin(angles)], axis=1)


def shape_geometry(shape: str) -> ShapeGeometry:
    """The outline of ``shape``, fitted to the bounding square [-1, 1]²."""
    if shape == "circle":
        return ShapeGeometry(_regular(96, 1.0, 0.0), (0.0, 0.0), 1.0)
    if shape == "square":
        return ShapeGeometry(np.array([[-1.0, -1.0], [1.0, -1.0], [1.0, 1.0], [-1.0, 1.0]]), (0.0, 0.0), 1.0)
    if shape == "diamond":
        return ShapeGeometry(
            np.array([[0.0, -1.0], [1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]]), (0.0, 0.0), 1.0 / math.sqrt(2.0)
        )
    if shape == "octagon":
        return ShapeGeometry(_regular(8, 1.0 / math.cos(math.pi / 8), 22.5), (0.0, 0.0), 1.0)
    if shape == "pentagon":
        radius = 1.0 / math.sin(math.radians(72.0))  # width 2R·sin72° = 2
        inradius = radius * math.cos(math.radians(36.0))
        shift = (radius - inradius) / 2.0  # centre the bounding box vertically
        return ShapeGeometry(_regular(5, radius, -90.0, shift), (0.0, shift), inradius)
    if shape in ("triangle", "inverted_triangle"):
        half_h = math.sqrt(3.0) / 2.0
        inradius = 1.0 / math.sqrt(3.0)
        sign = 1.0 if shape == "triangle" else -1.0
        verts = np.array([[0.0, -half_h], [1.0, half_h], [-1.0, half_h]]) * np.array([1.0, sign])
        return ShapeGeometry(verts, (0.0, sign * (half_h - inradius)), inradius)
    raise ConfigError(f"unknown sign shape {shape!r}; known: {list(SHAPES)}")


@dataclass(frozen=True)
class GlyphPart:
    """One part of a sign's central glyph: a filled polygon in shape coordinates."""

    kind: str
    vertices: tuple[tuple[float, float], ...]

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "vertices": [list(v) for v in self.vertices]}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> GlyphPart:
        _check_keys(data, {"kind", "vertices"}, "glyph part")
        if data["kind"] not in GLYPH_KINDS:
            raise ConfigError(f"unknown glyph kind {data['kind']!r}; known: {list(GLYPH_KINDS)}")
        vertices = tuple((float(x), float(y)) for x, y in data["vertices"])
        if len(vertices) < 3:
            raise ConfigError(f"a glyph part needs at least 3 vertices, got {len(vertices)}")
        return cls(str(data["kind"]), vertices)


@dataclass(frozen=True)
class SignClass:
    """A sign class: everything needed to draw its foreground (serialisable to a plain JSON dict).

    Colours are :data:`PALETTE` names; ``border`` is ``None`` for no border; ``border_width`` is a
    fraction of the sign's size (the side of its bounding square).
    """

    shape: str
    fill: str
    border: str | None
    border_width: float
    glyph_color: str
    glyph: tuple[GlyphPart, ...]

    def __post_init__(self) -> None:
        shape_geometry(self.shape)  # validates the shape name
        for colour in (self.fill, self.glyph_color, *([self.border] if self.border else [])):
            if colour not in PALETTE:
                raise ConfigError(f"unknown colour {colour!r}; known: {sorted(PALETTE)}")
        if self.border is not None and not 0.0 < self.border_width < 0.5:
            raise ConfigError(f"border_width must be in (0, 0.5), got {self.border_width}")
        if not self.glyph:
            raise ConfigError("a sign class needs at least one glyph part")

    @property
    def appearance(self) -> tuple[str, str, str | None, float, str]:
        """Everything but the glyph geometry; confusion pairs share it."""
        return (self.shape, self.fill, self.border, self.border_width, self.glyph_color)

    def to_dict(self) -> dict[str, Any]:
        return {
            "shape": self.shape,
            "fill": self.fill,
            "border": self.border,
            "border_width": self.border_width,
            "glyph_color": self.glyph_color,
            "glyph": [part.to_dict() for part in self.glyph],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SignClass:
        _check_keys(data, {"shape", "fill", "border", "border_width", "glyph_color", "glyph"}, "sign class")
        return cls(
            shape=str(data["shape"]),
            fill=str(data["fill"]),
            border=None if data["border"] is None else str(data["border"]),
            border_width=float(data["border_width"]),
            glyph_color=str(data["glyph_color"]),
            glyph=tuple(GlyphPart.from_dict(p) for p in data["glyph"]),
        )


def _check_keys(data: Mapping[str, Any], expected: set[str], what: str) -> None:
    if not isinstance(data, Mapping):
        raise ConfigError(f"a {what} must be a dict, got {type(data).__name__}")
    missing, extra = expected - set(data), set(data) - expected
    if missing or extra:
        raise ConfigError(f"bad {what} keys: missing {sorted(missing)}, unexpected {sorted(extra)}")


def _rotate(points: np.ndarray, angle: float) -> np.ndarray:
    c, s = math.cos(angle), math.sin(angle)
    return points @ np.array([[c, s], [-s, c]])


def _glyph_part(kind: str, rng: np.random.Generator) -> np.ndarray:
    """Vertices of one glyph part in the glyph's unit disc."""
    if kind == "bar":
        length = rng.uniform(1.0, 1.8)
        half_t = rng.uniform(0.12, 0.22)
        offset = rng.uniform(-1.0, 1.0, 2) * (1.0 - length / 2.0) / math.sqrt(2.0)
        rect = np.array(
            [[-length / 2, -half_t], [length / 2, -half_t], [length / 2, half_t], [-length / 2, half_t]]
        )
        return _rotate(rect, rng.uniform(0.0, math.pi)) + offset
    if kind == "arrow":
        length = rng.uniform(1.3, 1.8)
        shaft = rng.uniform(0.1, 0.18)
        head_w = rng.uniform(0.3, 0.45)
        head_l = rng.uniform(0.4, 0.6)
        tip, tail = length / 2.0, -length / 2.0
        neck = tip - head_l
        arrow = np.array(
            [
                [tail, -shaft],
                [neck, -shaft],
                [neck, -head_w],
                [tip, 0.0],
                [neck, head_w],
                [neck, shaft],
                [tail, shaft],
            ]
        )
        return _rotate(arrow, rng.integers(0, 8) * math.pi / 4.0)
    n = int(rng.integers(3, 7))
    angles = np.sort(rng.uniform(0.0, 2.0 * math.pi, n))
    radii = rng.uniform(0.5, 0.9, n)
    offset = rng.uniform(-0.15, 0.15, 2)
    return np.stack([radii * np.cos(angles), radii * np.sin(angles)], axis=1) + offset


def draw_glyph(shape: str, border_width: float, rng: np.random.Generator) -> tuple[GlyphPart, ...]:
    """A random glyph of 1–3 parts placed in the central disc of ``shape`` (spec §7.3.1)."""
    geo = shape_geometry(shape)
    radius = _GLYPH_FILL * (geo.inradius - 2.0 * border_width)
    center = np.asarray(geo.incenter)
    parts = []
    for _ in range(int(rng.integers(1, 4))):
        kind = GLYPH_KINDS[int(rng.integers(len(GLYPH_KINDS)))]
        verts = center + radius * _glyph_part(kind, rng)
        parts.append(GlyphPart(kind, tuple((float(x), float(y)) for x, y in verts)))
    return tuple(parts)


def draw_classes(
    num_classes: int,
    seed: int,
    confusion_pairs: int = 0,
    fills: Sequence[str] | None = None,
    colour_cues: bool = True,
) -> list[SignClass]:
    """Draw ``num_classes`` sign classes for one model from ``seed`` (spec §7.3.1).

    Every class gets its own (shape, fill colour) combination, except ``confusion_pairs`` pairs of classes
    that share shape, fill, border and glyph colour and differ only in the glyph. Pair members sit at
    random class indices; :func:`find_confusion_pairs` recovers them.

    ``fills=None`` draws the combinations from every shape and palette colour (population v1: two classes
    mostly differ by fill colour). A list of fill colours gives the *shared-fill* design of population v2
    (issue 16, TrojAI round 2's signs): every fill used is shared by at least two looks, which differ by
    shape, so no class is told apart from the others by its fill colour alone.

    ``colour_cues=False`` (with ``fills``) also takes every other colour cue away, so that classes differ
    by shape and glyph only: no borders, the glyph colour follows the fill (:data:`GLYPH_ON_FILL`), and
    looks get distinct shapes while there are shapes left (:func:`shared_fill_looks`).
    """
    if not colour_cues and fills is None:
        raise ConfigError("colour_cues=False needs the shared fill colours (fills)")
    if num_classes < 1:
        raise ConfigError(f"num_classes must be >= 1, got {num_classes}")
    if confusion_pairs < 0 or 2 * confusion_pairs > num_classes:
        raise ConfigError(f"confusion_pairs must be in [0, num_classes // 2], got {confusion_pairs}")
    n_looks = num_classes - confusion_pairs
    rng = np.random.default_rng(derive_seed(seed, "sign-classes"))
    if fills is None:
        combos = [(shape, fill) for shape in SHAPES for fill in PALETTE]
        if n_looks > len(combos):
            raise ConfigError(
                f"{num_classes} classes with {confusion_pairs} confusion pairs need {n_looks} distinct "
                f"shape/colour looks; only {len(combos)} exist"
            )
        looks = [combos[int(i)] for i in rng.choice(len(combos), size=n_looks, replace=False)]
    else:
        looks = shared_fill_looks(n_looks, fills, rng, distinct_shapes=not colour_cues)
    classes: list[SignClass] = []
    for look, (shape, fill) in enumerate(looks):
        if colour_cues:
            options = contrasting_colors(fill)
            border = options[int(rng.integers(len(options)))] if rng.random() < _BORDER_PROB else None
            border_width = float(rng.uniform(*_BORDER_WIDTH)) if border is not None else 0.0
            glyph_color = options[int(rng.integers(len(options)))]
        else:
            border, border_width, glyph_color = None, 0.0, GLYPH_ON_FILL[fill]
        members = 2 if look < confusion_pairs else 1
        for _ in range(members):
            glyph = draw_glyph(shape, border_width, rng)
            classes.append(SignClass(shape, fill, border, border_width, glyph_color, glyph))
    order = rng.permutation(num_classes)
    return [classes[int(i)] for i in order]


def shared_fill_looks(
    n_looks: int, fills: Sequence[str], rng: np.random.Generator, *, distinct_shapes: bool = False
) -> list[tuple[str, str]]:
    """``n_looks`` distinct (shape, fill) looks over the shared ``fills`` (population v2, issue 16).

    The fills used are a random ``min(len(fills), n_looks // 2)`` of ``fills`` (at least one), dealt out
    in turn so that their counts differ by at most one and each is worn by at least two looks; looks of
    one fill get distinct shapes. Fill colour alone therefore never identifies a class. With
    ``distinct_shapes`` every look also gets a shape no other look has while there are shapes left (up
    to :data:`SHAPES` looks), so no two classes differ by their fill alone either.
    """
    if not fills:
        raise ConfigError("the shared fill colours must be a non-empty list")
    if len(set(fills)) != len(fills):
        raise ConfigError(f"the shared fill colours list a colour twice: {list(fills)}")
    for name in fills:
        if name not in PALETTE:
            raise ConfigError(f"unknown colour {name!r}; known: {sorted(PALETTE)}")
    used = max(1, min(len(fills), n_looks // 2))
    if n_looks > used * len(SHAPES):
        raise ConfigError(
            f"{n_looks} looks over {used} shared fill colours: more than {len(SHAPES)} shapes per fill"
        )
    chosen = [fills[int(i)] for i in rng.choice(len(fills), size=used, replace=False)]
    per_fill = [chosen[i % used] for i in range(n_looks)]
    shapes_of: dict[str, list[str]] = {
        fill: [SHAPES[int(i)] for i in rng.permutation(len(SHAPES))] for fill in chosen
    }
    if distinct_shapes:
        order = [SHAPES[int(i)] for i in rng.permutation(len(SHAPES))]
        looks = []
        for fill in per_fill:
            fresh = [shape for shape in order if all(shape != taken for taken, _ in looks)]
            shape = fresh[0] if fresh else next(s for s in shapes_of[fill] if (s, fill) not in looks)
            looks.append((shape, fill))
    else:
        looks = [(shapes_of[fill].pop(), fill) for fill in per_fill]
    return [looks[int(i)] for i in rng.permutation(n_looks)]


def find_confusion_pairs(classes: Sequence[SignClass]) -> list[tuple[int, int]]:
    """Index pairs (i < j) of classes that look alike except for the glyph."""
    return [
        (i, j)
        for i in range(len(classes))
        for j in range(i + 1, len(classes))
        if classes[i].appearance == classes[j].appearance
    ]


def classes_to_config(classes: Sequence[SignClass]) -> list[dict[str, Any]]:
    """JSON-able list describing ``classes`` (goes into a model's config.json)."""
    return [c.to_dict() for c in classes]


def classes_from_config(config: Sequence[Mapping[str, Any]]) -> list[SignClass]:
    """Inverse of :func:`classes_to_config`."""
    return [SignClass.from_dict(c) for c in config]
