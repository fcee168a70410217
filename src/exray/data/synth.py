"""TrojAI-like synthetic traffic-sign images (spec §7.3.1–7.3.5, modelled on TrojAI rounds 2–4).

A :class:`SignRenderer` turns class ids into images: it warps each class's sign template (see
:mod:`exray.data.signs`) with a random perspective, rotation and scale onto a background (see
:mod:`exray.data.backgrounds`) at ``supersample``× the output size, area-downsamples, then applies
lighting (brightness, gamma), fog, rain, blur and noise at the output size, all batched with torch.
Per-sample triggers are applied as TrojAI does: foreground triggers (the polygon) are pasted on the sign
*before* the geometric transforms, so they warp with it; whole-image triggers (filters, patches, blends)
are applied to the finished images, exactly as ``trigger.apply(images, foreground=masks)`` would do post
hoc. Triggers draw their random choices from a separate stream, so one seed renders the same scene with
and without triggers (clean/stamped pairs).

Zoom and translation are not separate steps: the sign's area is drawn uniformly in ``sign_area`` and its
position uniformly over the places where it fits, which covers TrojAI's zoom ±10 % / shift ±10 %. A sign
too large to fit at its rotation is shrunk until it fits, but never below the lower area bound.

Same seed → bit-identical images (for a fixed torch version and CPU). :mod:`exray.data.datasets` renders
labelled sets in chunks; :mod:`exray.data.geometry` holds the batched geometry.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, fields
from typing import Any, Protocol, runtime_checkable

import numpy as np
import torch
import torch.nn.functional as F

from exray.data.backgrounds import backgrounds
from exray.data.geometry import BLUR_RADIUS, column, gaussian_blur, homographies, polygon_areas, project
from exray.data.signs import SignClass, shape_geometry
from exray.data.templates import shape_to_template_scale, sign_template
from exray.errors import ConfigError, InputError

_MAX_TEMPLATE = 256  # template side cap (pixels); large outputs upsample the sign slightly
_RAIN_ANGLE_DEG = 20.0
_RAIN_OPACITY = 0.35


@dataclass(frozen=True)
class AugmentOptions:
    """Ranges of the random scene parameters (spec §7.3.3–7.3.4); serialisable with ``to_dict``.

    ``sign_area``: sign area as a fraction of the image area. ``rotation_deg``: max |rotation|.
    ``perspective``: max corner jitter as a fraction of the sign's side. ``photo_fraction``: share of
    photo backgrounds (the rest are procedural road scenes). ``brightness``/``gamma``: lighting ranges.
    ``blur_sigma``/``noise_sigma``: max Gaussian blur (output pixels) and max noise std.
    ``weather_prob``: probability that rain (and, independently, fog) is non-zero; its strength is then
    Beta(``weather_beta``). ``fog_gray``: range of the gray level fog blends toward.
    """

    sign_area: tuple[float, float] = (0.2, 0.8)
    rotation_deg: float = 30.0
    perspective: float = 0.15
    photo_fraction: float = 0.5
    brightness: tuple[float, float] = (0.75, 1.25)
    gamma: tuple[float, float] = (0.8, 1.25)
    blur_sigma: float = 1.0
    noise_sigma: float = 0.02
    weather_prob: float = 0.5
    weather_beta: tuple[float, float] = (1.0, 10.0)
    fog_gray: tuple[float, float] = (0.75, 0.9)

    def __post_init__(self) -> None:
        lo, hi = self.sign_area
        if not 0.0 < lo <= hi <= 1.0:
            raise ConfigError(f"sign_area must satisfy 0 < lo <= hi <= 1, got {self.sign_area}")
        for name in ("brightness", "gamma", "fog_gray", "weather_beta"):
            a, b = getattr(self, name)
            if not 0.0 < a <= b:
                raise ConfigError(f"{name} must be a range 0 < lo <= hi, got {(a, b)}")
        if not 0.0 <= self.rotation_deg <= 180.0:
            raise ConfigError(f"rotation_deg must be in [0, 180], got {self.rotation_deg}")
        if not 0.0 <= self.perspective < 0.5:
            raise ConfigError(f"perspective must be in [0, 0.5), got {self.perspective}")
        for name in ("photo_fraction", "weather_prob"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ConfigError(f"{name} must be a probability, got {getattr(self, name)}")
        if not 0.0 <= self.blur_sigma <= BLUR_RADIUS / 3.0:
            raise ConfigError(f"blur_sigma must be in [0, {BLUR_RADIUS / 3.0}], got {self.blur_sigma}")
        if not 0.0 <= self.noise_sigma <= 0.5:
            raise ConfigError(f"noise_sigma must be in [0, 0.5], got {self.noise_sigma}")

    def to_dict(self) -> dict[str, Any]:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> AugmentOptions:
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ConfigError(f"unknown augmentation options {sorted(unknown)}; known: {sorted(known)}")
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in data.items()})


@dataclass(frozen=True)
class RenderedBatch:
    """``images`` (N, 3, H, W) float32 RGB in [0, 1]; ``masks`` (N, 1, H, W) bool sign masks (pixels at
    least half covered by the sign); ``labels`` (N,) int64."""

    images: torch.Tensor
    masks: torch.Tensor
    labels: torch.Tensor

    def __len__(self) -> int:
        return int(self.labels.shape[0])


@runtime_checkable
class Trigger(Protocol):
    """What the renderer needs of a trigger (:class:`exray.triggers.Trigger` is one): whether it belongs to
    the foreground object (stamped before the geometric transforms) and ``apply``, which stamps a batch.
    A protocol, so that data generation does not depend on the trigger package."""

    stamps_foreground: bool

    def apply(
        self,
        images: torch.Tensor,
        *,
        foreground: torch.Tensor | None = None,
        rng: np.random.Generator | None = None,
    ) -> torch.Tensor: ...


TriggerArg = Trigger | Sequence[Trigger | None] | None


class SignRenderer:
    """Renders batches of sign images for a fixed list of classes at a fixed size.

    ``supersample`` defaults to 2 for outputs up to 64 px and 1 above (224 px renders at 224).
    Templates are rasterised once per class and cached.
    """

    def __init__(
        self,
        classes: Sequence[SignClass],
        *,
        size: int = 32,
        supersample: int | None = None,
        options: AugmentOptions | None = None,
    ) -> None:
        if not classes:
            raise ConfigError("a renderer needs at least one sign class")
        if size < 8:
            raise ConfigError(f"image size must be >= 8, got {size}")
        if supersample is None:
            supersample = 2 if size <= 64 else 1
        if supersample < 1:
            raise ConfigError(f"supersample must be >= 1, got {supersample}")
        self.classes = tuple(classes)
        self.size = size
        self.supersample = supersample
        self.options = options if options is not None else AugmentOptions()
        self.internal = size * supersample
        self.template_size = min(self.internal, _MAX_TEMPLATE)
        self._templates = torch.stack([sign_template(c, self.template_size) for c in self.classes])
        self._geometry = [shape_geometry(c.shape) for c in self.classes]
        coords = (torch.arange(self.internal, dtype=torch.float32) * 2.0 + 1.0) / self.internal - 1.0
        gy, gx = torch.meshgrid(coords, coords, indexing="ij")
        self._pixels = torch.stack([gx, gy, torch.ones_like(gx)], dim=-1).reshape(-1, 3)

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def render(
        self,
        labels: Sequence[int] | np.ndarray | torch.Tensor,
        rng: int | np.random.Generator,
        *,
        triggers: TriggerArg = None,
    ) -> RenderedBatch:
        """Render one image per entry of ``labels``.

        ``rng``: a seed or a ``numpy.random.Generator`` (consumed). ``triggers``: one trigger for every
        sample, or a per-sample sequence with ``None`` for clean samples.
        """
        labels_np = self._check_labels(labels)
        n = labels_np.size
        per_sample = self._per_sample_triggers(triggers, n)
        gen = np.random.default_rng(rng)
        # Triggers draw from their own stream, so a seed gives the same scene with or without them.
        trigger_gen = np.random.default_rng(int(gen.integers(2**63)))
        opts = self.options
        images = backgrounds(n, self.internal, gen, opts.photo_fraction)
        signs = self._warped_signs(labels_np, per_sample, gen, trigger_gen)
        images = torch.addcmul(signs[:, :3], images, 1.0 - signs[:, 3:4])
        coverage = signs[:, 3:4]
        if self.supersample > 1:
            images = F.avg_pool2d(images, self.supersample)
            coverage = F.avg_pool2d(coverage, self.supersample)
        masks = coverage >= 0.5

        # Lighting and weather act pointwise or at the output scale: apply them after downsampling.
        brightness = column(gen.uniform(*opts.brightness, n))
        gamma = column(gen.uniform(*opts.gamma, n))
        images = (images * brightness).clamp_(0.0, 1.0).pow_(gamma)
        fog = column(self._weather(n, gen))
        fog_gray = column(gen.uniform(*opts.fog_gray, n))
        images = torch.lerp(images, fog_gray.expand_as(images), fog)
        rain = self._weather(n, gen)
        noise_gen = torch.Generator().manual_seed(int(gen.integers(2**63)))
        images = self._rain(images, rain, gen, noise_gen)
        images = gaussian_blur(images, gen.uniform(0.0, opts.blur_sigma, n))
        noise = column(gen.uniform(0.0, opts.noise_sigma, n))
        images = images.add_(noise * torch.randn(images.shape, generator=noise_gen)).clamp_(0.0, 1.0)

        images = self._apply_image_triggers(images, masks, per_sample, trigger_gen)
        return RenderedBatch(images.contiguous(), masks, torch.from_numpy(labels_np.astype(np.int64)))

    def _check_labels(self, labels: Sequence[int] | np.ndarray | torch.Tensor) -> np.ndarray:
        if isinstance(labels, torch.Tensor):
            labels = labels.cpu().numpy()
        arr = np.asarray(labels)
        if arr.ndim != 1 or arr.size == 0 or not np.issubdtype(arr.dtype, np.integer):
            raise InputError(f"labels must be a non-empty 1-D sequence of ints, got shape {arr.shape}")
        if arr.min() < 0 or arr.max() >= self.num_classes:
            raise InputError(f"labels must be in [0, {self.num_classes - 1}], got {arr.min()}..{arr.max()}")
        return arr

    @staticmethod
    def _per_sample_triggers(triggers: TriggerArg, n: int) -> list[Trigger | None]:
        if triggers is None:
            return [None] * n
        if isinstance(triggers, Trigger):
            return [triggers] * n
        per_sample = list(triggers)
        if len(per_sample) != n:
            raise InputError(f"got {len(per_sample)} triggers for {n} samples")
        if not all(t is None or isinstance(t, Trigger) for t in per_sample):
            raise InputError("triggers must be Trigger instances or None")
        return per_sample

    def _weather(self, n: int, gen: np.random.Generator) -> np.ndarray:
        """Rain or fog strength per sample: 0 with probability 1 − weather_prob, else Beta (spec §7.3.4)."""
        active = gen.random(n) < self.options.weather_prob
        return np.where(active, gen.beta(*self.options.weather_beta, n), 0.0)

    def _sign_transforms(self, labels: np.ndarray, gen: np.random.Generator) -> np.ndarray:
        """(N, 3, 3) homographies from shape coordinates to normalised image coordinates."""
        n = labels.size
        opts = self.options
        square = np.array([[-1.0, -1.0], [1.0, -1.0], [1.0, 1.0], [-1.0, 1.0]])
        jitter = gen.uniform(-2.0 * opts.perspective, 2.0 * opts.perspective, size=(n, 4, 2))
        perspective = homographies(square, square[None] + jitter)
        theta = np.deg2rad(gen.uniform(-opts.rotation_deg, opts.rotation_deg, n))
        rotation = np.zeros((n, 3, 3))
        rotation[:, 0, 0] = rotation[:, 1, 1] = np.cos(theta)
        rotation[:, 0, 1] = -np.sin(theta)
        rotation[:, 1, 0] = np.sin(theta)
        rotation[:, 2, 2] = 1.0
        local = rotation @ perspective
        target_area = gen.uniform(*opts.sign_area, n) * 4.0  # the image spans [-1, 1]², area 4
        placement = gen.uniform(0.0, 1.0, size=(n, 2))
        result = np.empty((n, 3, 3))
        for k in np.unique(labels):
            idx = np.flatnonzero(labels == k)
            verts = project(local[idx], self._geometry[k].vertices)  # (n_k, V, 2)
            area = polygon_areas(verts)
            scale = np.sqrt(target_area[idx] / area)
            extent = (verts.max(axis=1) - verts.min(axis=1)).max(axis=1)
            fit = np.maximum(2.0 / extent, np.sqrt(opts.sign_area[0] * 4.0 / area))
            scale = np.minimum(scale, fit)
            lo = verts.min(axis=1) * scale[:, None]
            hi = verts.max(axis=1) * scale[:, None]
            free_lo, free_hi = -1.0 - lo, 1.0 - hi
            center = np.where(
                free_hi >= free_lo,
                free_lo + placement[idx] * (free_hi - free_lo),
                -(lo + hi) / 2.0,
            )
            place = np.zeros((idx.size, 3, 3))
            place[:, 0, 0] = place[:, 1, 1] = scale
            place[:, :2, 2] = center
            place[:, 2, 2] = 1.0
            result[idx] = place @ local[idx]
        return result

    def _warped_signs(
        self,
        labels: np.ndarray,
        triggers: list[Trigger | None],
        gen: np.random.Generator,
        trigger_gen: np.random.Generator,
    ) -> torch.Tensor:
        """(N, 4, R, R) premultiplied RGBA signs warped into the image frame."""
        n, r = labels.size, self.internal
        forward = self._sign_transforms(labels, gen)
        inverse = torch.from_numpy(np.linalg.inv(forward)).float()
        k = shape_to_template_scale(self.template_size)
        out = torch.empty(n, 4, r, r)
        stamped = [i for i in range(n) if triggers[i] is not None and triggers[i].stamps_foreground]
        groups: list[tuple[np.ndarray, torch.Tensor]] = []
        if stamped:
            templates = self._templates[torch.from_numpy(labels[stamped])]  # a copy
            by_trigger: dict[int, list[int]] = {}
            for j, i in enumerate(stamped):
                by_trigger.setdefault(id(triggers[i]), []).append(j)
            for members in by_trigger.values():
                sel = torch.tensor(members)
                trigger = triggers[stamped[members[0]]]
                opaque = templates[sel, 3] > 0.99  # paste inside the fully opaque part of the sign
                templates[sel, :3] = trigger.apply(templates[sel, :3], foreground=opaque, rng=trigger_gen)
            groups.append((np.asarray(stamped), templates))
        clean = np.setdiff1d(np.arange(n), stamped)
        for cls in np.unique(labels[clean]):
            groups.append((clean[labels[clean] == cls], self._templates[int(cls)][None]))
        for idx, templates in groups:
            coords = torch.einsum("nij,pj->npi", inverse[torch.from_numpy(idx)], self._pixels)
            grid = (coords[..., :2] / coords[..., 2:3] * k).reshape(idx.size, r, r, 2)
            if templates.shape[0] == 1:  # one template for the whole group: stack the grids vertically
                warped = F.grid_sample(templates, grid.reshape(1, idx.size * r, r, 2), align_corners=False)
                warped = warped.reshape(4, idx.size, r, r).transpose(0, 1)
            else:
                warped = F.grid_sample(templates, grid, align_corners=False)
            out[torch.from_numpy(idx)] = warped
        return out

    def _rain(
        self, images: torch.Tensor, rain: np.ndarray, gen: np.random.Generator, noise_gen: torch.Generator
    ) -> torch.Tensor:
        """Rain streaks (slanted, light gray) on samples with rain > 0, plus a slight darkening."""
        idx = np.flatnonzero(rain > 0)
        angle = np.deg2rad(gen.uniform(-_RAIN_ANGLE_DEG, _RAIN_ANGLE_DEG, idx.size))
        if idx.size == 0:
            return images
        n, r = idx.size, self.size
        strength = torch.from_numpy(rain[idx]).float()[:, None, None, None]
        drops = (torch.rand(n, 1, r, r, generator=noise_gen) < 0.3 * strength).float()
        length = max(2, r // 8)
        csum = F.pad(drops.cumsum(dim=2), (0, 0, length, 0))
        streaks = (csum[:, :, length:] - csum[:, :, :-length]).clamp(max=1.0)
        cos, sin = torch.from_numpy(np.cos(angle)).float(), torch.from_numpy(np.sin(angle)).float()
        theta = torch.zeros(n, 2, 3)
        theta[:, 0, 0], theta[:, 0, 1], theta[:, 1, 0], theta[:, 1, 1] = cos, -sin, sin, cos
        grid = F.affine_grid(theta, [n, 1, r, r], align_corners=False)
        streaks = F.grid_sample(streaks, grid, padding_mode="reflection", align_corners=False)
        sub = images[torch.from_numpy(idx)] * (1.0 - 0.3 * strength)
        sub = sub + _RAIN_OPACITY * streaks * (0.85 - sub)
        images = images.clone()
        images[torch.from_numpy(idx)] = sub
        return images

    @staticmethod
    def _apply_image_triggers(
        images: torch.Tensor,
        masks: torch.Tensor,
        triggers: list[Trigger | None],
        trigger_gen: np.random.Generator,
    ) -> torch.Tensor:
        groups: dict[int, tuple[Trigger, list[int]]] = {}
        for i, trig in enumerate(triggers):
            if trig is not None and not trig.stamps_foreground:
                groups.setdefault(id(trig), (trig, []))[1].append(i)
        for trig, members in groups.values():
            idx = torch.tensor(members)
            images[idx] = trig.apply(images[idx], foreground=masks[idx], rng=trigger_gen).to(images.dtype)
        return images
