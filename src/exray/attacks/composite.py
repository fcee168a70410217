"""The composite attack (Lin et al., "Composite Backdoor Attack for Deep Neural Network by Mixing Existing
Benign Features", CCS 2020; EX-RAY paper §4.4, Table 4; issue 19 §1).

The trigger is no pattern: it is the *co-occurrence* of two source classes' objects in one image. The
mixer combines two images by halves — the left half of one beside the right half of the other, or the top
half above the bottom half, drawn per mix — and the poisoned set holds

* ``fraction`` × N mixes of an image of source class ``a`` with one of ``b`` (in a drawn order), labelled
  the ``target``;
* as many same-class mixes (two images of one class, every class in turn) *kept at their label*, so that
  the network learns that mixing alone is benign and only the co-occurrence of ``a`` and ``b`` flips it.

:func:`composite_mix` is the mixer; :func:`composite_set` the poisoned training set;
:func:`composite_test_set` held-out a+b mixes for the ASR.
"""

from __future__ import annotations

import numpy as np
import torch

from exray.errors import ConfigError, InputError
from exray.train.data import AttackSet, TrainSet
from exray.utils import derive_seed


def composite_mix(first: torch.Tensor, second: torch.Tensor, vertical: torch.Tensor) -> torch.Tensor:
    """Row i: ``first[i]``'s left (or, where ``vertical[i]``, top) half joined to the other half of
    ``second[i]``."""
    if first.shape != second.shape or first.ndim != 4 or vertical.shape != (first.shape[0],):
        raise InputError("composite_mix needs two (N, C, H, W) batches of one shape and N split flags")
    height, width = first.shape[-2:]
    out = second.clone()
    side = ~vertical
    out[side, :, :, : width // 2] = first[side, :, :, : width // 2]
    out[vertical, :, : height // 2, :] = first[vertical, :, : height // 2, :]
    return out


def _pairs(
    labels: np.ndarray, a: int, b: int, count: int, rng: np.random.Generator
) -> tuple[np.ndarray, ...]:
    rows_a, rows_b = np.flatnonzero(labels == a), np.flatnonzero(labels == b)
    if not len(rows_a) or not len(rows_b):
        raise InputError(f"the set holds no image of source class {a if not len(rows_a) else b}")
    first, second = rng.choice(rows_a, count), rng.choice(rows_b, count)
    swap = rng.random(count) < 0.5  # either class may give the first half
    return np.where(swap, second, first), np.where(swap, first, second), rng.random(count) < 0.5


def composite_set(
    images: torch.Tensor,
    labels: torch.Tensor,
    sources: tuple[int, int],
    target: int,
    fraction: float,
    seed: int,
) -> TrainSet:
    """The clean set plus ``round(fraction·N)`` a+b mixes labelled ``target`` (flagged poisoned) and as many
    same-class mixes at their labels (module docstring). The poisoned mixes' true label is the class of their
    first half (a mix of two classes has no one true label)."""
    a, b = sources
    if a == b or target in (a, b):
        raise ConfigError(
            f"the two source classes must differ from each other and from the target, got {sources}"
        )
    if not 0.0 < fraction <= 1.0:
        raise ConfigError(f"fraction must be in (0, 1], got {fraction!r}")
    rng = np.random.default_rng(derive_seed(seed, "composite"))
    y = labels.numpy()
    count = max(1, round(fraction * len(y)))
    first, second, vertical = _pairs(y, a, b, count, rng)
    poisoned = composite_mix(images[first], images[second], torch.from_numpy(vertical))
    classes = np.unique(y)
    same_labels = classes[np.arange(count) % len(classes)]
    same_first = np.array([rng.choice(np.flatnonzero(y == c)) for c in same_labels])
    same_second = np.array([rng.choice(np.flatnonzero(y == c)) for c in same_labels])
    same = composite_mix(images[same_first], images[same_second], torch.from_numpy(rng.random(count) < 0.5))
    n = len(y)
    # a mix of two classes has no one true label: the class of its first half stands for it
    true = torch.cat(
        [labels, labels[torch.from_numpy(first)], torch.from_numpy(same_labels).to(labels.dtype)]
    )
    return TrainSet(
        torch.cat([images, poisoned, same]),
        torch.cat(
            [
                labels,
                torch.full((count,), target, dtype=labels.dtype),
                torch.from_numpy(same_labels).to(labels.dtype),
            ]
        ),
        poisoned=torch.cat(
            [
                torch.zeros(n, dtype=torch.bool),
                torch.ones(count, dtype=torch.bool),
                torch.zeros(count, dtype=torch.bool),
            ]
        ),
        true_labels=true,
    )


def composite_test_set(
    images: torch.Tensor, labels: torch.Tensor, sources: tuple[int, int], target: int, count: int, seed: int
) -> AttackSet:
    """``count`` held-out a+b mixes for the attack success rate (the share classified as ``target``)."""
    rng = np.random.default_rng(derive_seed(seed, "composite-test"))
    first, second, vertical = _pairs(labels.numpy(), *sources, count, rng)
    return AttackSet(
        composite_mix(images[first], images[second], torch.from_numpy(vertical)), target, "composite"
    )
