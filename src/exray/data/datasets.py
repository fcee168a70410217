"""Labelled sets of synthetic signs (spec §7.3): :func:`render_dataset` renders clean images of every class
in seeded chunks with a :class:`~exray.data.synth.SignRenderer`; :func:`render_train_test` two independent
sets."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from exray.data.signs import SignClass
from exray.data.synth import AugmentOptions, SignRenderer
from exray.errors import ConfigError
from exray.utils import derive_seed


@dataclass(frozen=True)
class SignDataset:
    """A rendered labelled set: ``images`` (N, 3, H, W) float32, ``labels`` (N,) int64, ``masks``
    (N, 1, H, W) bool."""

    images: torch.Tensor
    labels: torch.Tensor
    masks: torch.Tensor

    def __len__(self) -> int:
        return int(self.labels.shape[0])


def render_dataset(
    classes: Sequence[SignClass],
    per_class: int,
    seed: int,
    *,
    size: int = 32,
    supersample: int | None = None,
    options: AugmentOptions | None = None,
    chunk_size: int = 256,
) -> SignDataset:
    """Render ``per_class`` clean images of every class, in a seeded random class order, in chunks.

    Chunk i uses the seed ``derive_seed(seed, "chunk", i)``, so the result depends on ``seed`` and
    ``chunk_size`` only.
    """
    if per_class < 1:
        raise ConfigError(f"per_class must be >= 1, got {per_class}")
    if chunk_size < 1:
        raise ConfigError(f"chunk_size must be >= 1, got {chunk_size}")
    renderer = SignRenderer(classes, size=size, supersample=supersample, options=options)
    order = np.random.default_rng(derive_seed(seed, "order")).permutation(len(classes) * per_class)
    labels = np.repeat(np.arange(len(classes)), per_class)[order]
    batches = [
        renderer.render(labels[start : start + chunk_size], derive_seed(seed, "chunk", i))
        for i, start in enumerate(range(0, labels.size, chunk_size))
    ]
    return SignDataset(
        images=torch.cat([b.images for b in batches]),
        labels=torch.cat([b.labels for b in batches]),
        masks=torch.cat([b.masks for b in batches]),
    )


def render_train_test(
    classes: Sequence[SignClass],
    train_per_class: int,
    test_per_class: int,
    seed: int,
    **kwargs: Any,
) -> tuple[SignDataset, SignDataset]:
    """Independent train and test sets (seeds derived from ``seed`` with keys "train" and "test");
    ``kwargs`` go to :func:`render_dataset`."""
    train = render_dataset(classes, train_per_class, derive_seed(seed, "train"), **kwargs)
    test = render_dataset(classes, test_per_class, derive_seed(seed, "test"), **kwargs)
    return train, test


def sign_area_fraction(masks: torch.Tensor) -> torch.Tensor:
    """Per-sample fraction of the image covered by the sign mask, (N,)."""
    return masks.flatten(1).float().mean(dim=1)
