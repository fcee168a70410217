"""The tensors the training loop consumes: a training set with per-sample poison flags, held-out sets."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from exray.data.images import check_images
from exray.errors import InputError


def _check_rows(tensor: torch.Tensor, n: int, what: str) -> None:
    if not isinstance(tensor, torch.Tensor) or tensor.ndim != 1 or tensor.shape[0] != n:
        raise InputError(f"{what} must be a 1-D tensor with one entry per image ({n})")


@dataclass(frozen=True)
class TrainSet:
    """Training images (N, 3, H, W) in [0, 1] with their training ``labels`` (N,) int64.

    ``poisoned`` (N,) bool marks poison samples (default: none); ``true_labels`` (N,) are the labels the
    images would have without poisoning (default: ``labels``). Both reach extra loss terms via the batch.
    """

    images: torch.Tensor
    labels: torch.Tensor
    poisoned: torch.Tensor | None = None
    true_labels: torch.Tensor | None = None

    def __post_init__(self) -> None:
        check_images(self.images, "training images", channels=3, finite=False)
        n = self.images.shape[0]
        _check_rows(self.labels, n, "labels")
        if self.poisoned is None:
            object.__setattr__(self, "poisoned", torch.zeros(n, dtype=torch.bool))
        if self.true_labels is None:
            object.__setattr__(self, "true_labels", self.labels)
        _check_rows(self.poisoned, n, "poisoned flags")
        _check_rows(self.true_labels, n, "true labels")
        object.__setattr__(self, "labels", self.labels.long())
        object.__setattr__(self, "true_labels", self.true_labels.long())
        object.__setattr__(self, "poisoned", self.poisoned.bool())

    def __len__(self) -> int:
        return int(self.labels.shape[0])


@dataclass(frozen=True)
class EvalSet:
    """Held-out clean images with their labels, for clean accuracy."""

    images: torch.Tensor
    labels: torch.Tensor

    def __post_init__(self) -> None:
        check_images(self.images, "evaluation images", channels=3, finite=False)
        _check_rows(self.labels, self.images.shape[0], "labels")

    def __len__(self) -> int:
        return int(self.labels.shape[0])


@dataclass(frozen=True)
class AttackSet:
    """Held-out triggered images of an attack's source classes and the ``target_class`` they should reach.

    The attack success rate is the fraction of ``images`` classified as ``target_class``.
    """

    images: torch.Tensor
    target_class: int
    name: str = "attack"

    def __post_init__(self) -> None:
        check_images(self.images, f"attack {self.name!r} images", channels=3, finite=False)

    def __len__(self) -> int:
        return int(self.images.shape[0])
