"""A second data source for the SDRM study (spec §6.3 [CHOICE] "one second 10-class set"): scikit-learn's
8×8 handwritten digits (1,797 images, bundled with scikit-learn — nothing is downloaded), rendered as
colour images.

Each output image takes one base digit, upsamples its 8×8 ink map bilinearly to ``size``, moves it by a
random similarity transform (rotation, scale, shift), and paints it in a random foreground colour on a
random background colour with a horizontal-to-vertical brightness gradient, plus Gaussian noise. The
colour pair keeps a minimum luma contrast, so the digit stays readable. The base digits are split once,
per class, into disjoint train and test pools (``test_fraction``), so test images never show a training
digit. Same seed → bit-identical images.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from functools import lru_cache
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F

from exray.errors import ConfigError
from exray.utils import derive_seed, torch_generator

NUM_CLASSES = 10
Split = Literal["train", "test"]
_LUMA = np.array([0.299, 0.587, 0.114])


@dataclass(frozen=True)
class DigitsOptions:
    """Ranges of the random rendering parameters (validated; ``to_dict``/``from_dict`` for specs).

    ``rotation_deg``: max |rotation|. ``scale``: digit scale range. ``shift``: max |shift| as a fraction
    of the image side. ``min_contrast``: min |luma(fg) − luma(bg)|. ``gradient``: max brightness change
    across the image. ``noise_sigma``: max noise std. ``test_fraction``: share of each class's base digits
    reserved for the test split.
    """

    rotation_deg: float = 15.0
    scale: tuple[float, float] = (0.8, 1.1)
    shift: float = 0.1
    min_contrast: float = 0.3
    gradient: float = 0.2
    noise_sigma: float = 0.03
    test_fraction: float = 0.3

    def __post_init__(self) -> None:
        lo, hi = self.scale
        if not 0.0 < lo <= hi <= 2.0:
            raise ConfigError(f"scale must satisfy 0 < lo <= hi <= 2, got {self.scale}")
        if not 0.0 <= self.rotation_deg <= 180.0:
            raise ConfigError(f"rotation_deg must be in [0, 180], got {self.rotation_deg}")
        if not 0.0 <= self.shift <= 0.5:
            raise ConfigError(f"shift must be in [0, 0.5], got {self.shift}")
        if not 0.0 <= self.min_contrast <= 0.8:
            raise ConfigError(f"min_contrast must be in [0, 0.8], got {self.min_contrast}")
        if not 0.0 <= self.gradient <= 0.5:
            raise ConfigError(f"gradient must be in [0, 0.5], got {self.gradient}")
        if not 0.0 <= self.noise_sigma <= 0.5:
            raise ConfigError(f"noise_sigma must be in [0, 0.5], got {self.noise_sigma}")
        if not 0.05 <= self.test_fraction <= 0.95:
            raise ConfigError(f"test_fraction must be in [0.05, 0.95], got {self.test_fraction}")

    def to_dict(self) -> dict[str, Any]:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> DigitsOptions:
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ConfigError(f"unknown digits options {sorted(unknown)}; known: {sorted(known)}")
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in data.items()})


@dataclass(frozen=True)
class DigitsDataset:
    """``images`` (N, 3, H, W) float32 RGB in [0, 1], ``labels`` (N,) int64, ``masks`` (N, 1, H, W) bool
    (pixels where the digit's ink is at least 0.5), ``base_index`` (N,) the scikit-learn digit shown."""

    images: torch.Tensor
    labels: torch.Tensor
    masks: torch.Tensor
    base_index: torch.Tensor

    def __len__(self) -> int:
        return int(self.labels.shape[0])


@lru_cache(maxsize=1)
def _digits() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits

    data = load_digits()
    return (data.images / 16.0).astype(np.float32), data.target.astype(np.int64)


def split_pools(test_fraction: float) -> dict[Split, list[np.ndarray]]:
    """Per split, per class, the indices of the base digits it may show (fixed, disjoint, seed-free)."""
    _, targets = _digits()
    pools: dict[Split, list[np.ndarray]] = {"train": [], "test": []}
    for c in range(NUM_CLASSES):
        members = np.flatnonzero(targets == c)
        members = np.random.default_rng(derive_seed(0, "digits-split", c)).permutation(members)
        n_test = round(test_fraction * members.size)
        pools["test"].append(np.sort(members[:n_test]))
        pools["train"].append(np.sort(members[n_test:]))
    return pools


def render_digits(
    per_class: int,
    seed: int,
    *,
    split: Split = "train",
    size: int = 32,
    options: DigitsOptions | None = None,
) -> DigitsDataset:
    """``per_class`` coloured digit images of every class from ``split``'s pool, in seeded random order.

    A pool smaller than ``per_class`` is cycled through (every digit is shown ⌊per_class / pool⌋ or one
    more times, each time with fresh random rendering).
    """
    if isinstance(per_class, bool) or not isinstance(per_class, int) or per_class < 1:
        raise ConfigError(f"per_class must be an int >= 1, got {per_class!r}")
    if split not in ("train", "test"):
        raise ConfigError(f"split must be 'train' or 'test', got {split!r}")
    if isinstance(size, bool) or not isinstance(size, int) or size < 8:
        raise ConfigError(f"size must be an int >= 8, got {size!r}")
    options = options or DigitsOptions()
    ink, targets = _digits()
    rng = np.random.default_rng(derive_seed(seed, "digits", split))
    chosen = []
    for pool in split_pools(options.test_fraction)[split]:
        reps = -(-per_class // pool.size)
        cycle = np.concatenate([rng.permutation(pool) for _ in range(reps)])
        chosen.append(cycle[:per_class])
    index = np.concatenate(chosen)[rng.permutation(per_class * NUM_CLASSES)]
    n = index.size

    maps = F.interpolate(torch.from_numpy(ink[index])[:, None], size=(size, size), mode="bilinear")
    angle = np.deg2rad(rng.uniform(-options.rotation_deg, options.rotation_deg, n))
    scale = rng.uniform(*options.scale, n)
    shift = rng.uniform(-options.shift, options.shift, (n, 2)) * 2.0  # grid units: the side spans 2
    cos, sin = np.cos(angle) / scale, np.sin(angle) / scale
    theta = np.stack([np.stack([cos, -sin, shift[:, 0]], 1), np.stack([sin, cos, shift[:, 1]], 1)], 1)
    grid = F.affine_grid(torch.from_numpy(theta).float(), [n, 1, size, size], align_corners=False)
    maps = F.grid_sample(maps, grid, mode="bilinear", padding_mode="zeros", align_corners=False)

    fg, bg = _colour_pairs(n, options.min_contrast, rng)
    direction = rng.uniform(0.0, 2.0 * np.pi, n)
    amount = rng.uniform(-options.gradient, options.gradient, n)
    noise_sigma = rng.uniform(0.0, options.noise_sigma, n)
    coords = torch.linspace(-0.5, 0.5, size)
    yy, xx = torch.meshgrid(coords, coords, indexing="ij")
    ramp = torch.from_numpy(np.cos(direction)).float()[:, None, None] * xx + (
        torch.from_numpy(np.sin(direction)).float()[:, None, None] * yy
    )
    light = 1.0 + torch.from_numpy(amount).float()[:, None, None] * ramp
    fg_t = torch.from_numpy(fg).float()[:, :, None, None]
    bg_t = torch.from_numpy(bg).float()[:, :, None, None]
    images = (bg_t * (1.0 - maps) + fg_t * maps) * light[:, None]
    noise = torch.randn(images.shape, generator=torch_generator(derive_seed(seed, "digits-noise", split)))
    images = (images + torch.from_numpy(noise_sigma).float()[:, None, None, None] * noise).clamp(0.0, 1.0)
    return DigitsDataset(
        images=images.contiguous(),
        labels=torch.from_numpy(targets[index]),
        masks=maps >= 0.5,
        base_index=torch.from_numpy(index),
    )


def _colour_pairs(n: int, min_contrast: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """``n`` (foreground, background) RGB pairs with |luma difference| >= ``min_contrast`` (rejection)."""
    fg = rng.uniform(0.0, 1.0, (n, 3))
    bg = rng.uniform(0.0, 1.0, (n, 3))
    bad = np.abs((fg - bg) @ _LUMA) < min_contrast
    while bad.any():
        fg[bad] = rng.uniform(0.0, 1.0, (int(bad.sum()), 3))
        bg[bad] = rng.uniform(0.0, 1.0, (int(bad.sum()), 3))
        bad = np.abs((fg - bg) @ _LUMA) < min_contrast
    return fg, bg


def render_digits_train_test(
    train_per_class: int,
    test_per_class: int,
    seed: int,
    *,
    size: int = 32,
    options: DigitsOptions | None = None,
) -> tuple[DigitsDataset, DigitsDataset]:
    """Train and test sets from the disjoint pools (seeds derived from ``seed`` with "train"/"test")."""
    train = render_digits(
        train_per_class, derive_seed(seed, "train"), split="train", size=size, options=options
    )
    test = render_digits(test_per_class, derive_seed(seed, "test"), split="test", size=size, options=options)
    return train, test
