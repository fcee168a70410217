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
class PoisonRedraw:
    """Poisoning re-drawn every epoch, as the SDRM reference code does (xpf/Multi-Level-MMD-Regularization:
    each non-target training image is poisoned with probability 0.1 when its batch is loaded).

    ``rows`` (M,) are the training rows that may be poisoned, ``triggered`` (M, 3, H, W) their triggered
    images; every epoch each row is independently replaced by its triggered image with the label
    ``target_class`` with probability ``probability`` (the draw is seeded by the training seed).
    """

    rows: torch.Tensor
    triggered: torch.Tensor
    probability: float
    target_class: int

    def __post_init__(self) -> None:
        check_images(self.triggered, "triggered images", channels=3, finite=False)
        _check_rows(self.rows, self.triggered.shape[0], "redraw rows")
        object.__setattr__(self, "rows", self.rows.long())
        if not isinstance(self.probability, int | float) or not 0.0 < self.probability <= 1.0:
            raise InputError(f"redraw probability must be in (0, 1], got {self.probability!r}")
        if (
            isinstance(self.target_class, bool)
            or not isinstance(self.target_class, int)
            or self.target_class < 0
        ):
            raise InputError(f"redraw target_class must be an int >= 0, got {self.target_class!r}")


@dataclass(frozen=True)
class EpochData:
    """What one epoch trains on: images, training labels, true labels and poison flags, one row each."""

    images: torch.Tensor
    labels: torch.Tensor
    true_labels: torch.Tensor
    poisoned: torch.Tensor


@dataclass(frozen=True)
class TrainSet:
    """Training images (N, 3, H, W) in [0, 1] with their training ``labels`` (N,) int64.

    ``poisoned`` (N,) bool marks poison samples (default: none); ``true_labels`` (N,) are the labels the
    images would have without poisoning (default: ``labels``). Both reach extra loss terms via the batch.
    ``redraw``: poisoning re-drawn every epoch on top of these rows (:class:`PoisonRedraw`).
    """

    images: torch.Tensor
    labels: torch.Tensor
    poisoned: torch.Tensor | None = None
    true_labels: torch.Tensor | None = None
    redraw: PoisonRedraw | None = None

    def epoch(self, images: torch.Tensor, gen: torch.Generator) -> EpochData:
        """One epoch's data from ``images`` (these rows, possibly in another memory format): as given, or
        with this epoch's re-drawn poison rows (``redraw``; ``gen`` draws them)."""
        if self.redraw is None:
            return EpochData(images, self.labels, self.true_labels, self.poisoned)
        chosen = torch.rand(self.redraw.rows.shape[0], generator=gen) < self.redraw.probability
        rows = self.redraw.rows[chosen]
        images = images.clone()
        images[rows] = self.redraw.triggered[chosen].to(images.dtype)
        labels = self.labels.clone()
        labels[rows] = self.redraw.target_class
        poisoned = self.poisoned.clone()
        poisoned[rows] = True
        return EpochData(images, labels, self.true_labels, poisoned)

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
        if self.redraw is not None:
            if not isinstance(self.redraw, PoisonRedraw):
                raise InputError("redraw must be a PoisonRedraw or None")
            if self.redraw.triggered.shape[1:] != self.images.shape[1:]:
                raise InputError("redraw's triggered images must have the training images' shape")
            if (
                self.redraw.rows.numel()
                and not 0 <= int(self.redraw.rows.min()) <= int(self.redraw.rows.max()) < n
            ):
                raise InputError(f"redraw rows must index the {n} training images")

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
