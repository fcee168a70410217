"""Input checks and small model helpers shared by the scanners."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import torch
from torch import nn

from exray.data.images import check_images
from exray.errors import InputError
from exray.models.runtime import model_device


@dataclass
class Examples:
    """Validated clean examples on the model's device: ``by_class[c]`` = images of class c."""

    by_class: dict[int, torch.Tensor]
    num_classes: int

    @property
    def classes(self) -> list[int]:
        return sorted(self.by_class)

    @property
    def image_size(self) -> tuple[int, int]:
        first = self.by_class[self.classes[0]]
        return int(first.shape[-2]), int(first.shape[-1])

    def all(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Every image and its label, classes in ascending order."""
        images = torch.cat([self.by_class[c] for c in self.classes])
        labels = torch.cat([torch.full((len(self.by_class[c]),), c, dtype=torch.long) for c in self.classes])
        return images, labels.to(images.device)


def check_examples(model: nn.Module, examples: Mapping[int, torch.Tensor]) -> Examples:
    """Validate ``{class: Tensor[N, 3, H, W]}`` against the model; move the images to its device.

    Raises :class:`InputError` for no classes, an empty class, NaN/Inf, mixed image sizes, labels that are
    not class indices of the model, or images the model cannot take.
    """
    if not isinstance(examples, Mapping) or not examples:
        raise InputError("examples must be a non-empty dict {class: Tensor[N, 3, H, W]}")
    device = model_device(model)
    by_class: dict[int, torch.Tensor] = {}
    size = None
    for label, images in examples.items():
        if isinstance(label, bool) or not isinstance(label, int) or label < 0:
            raise InputError(f"example classes must be non-negative ints, got {label!r}")
        check_images(images, f"examples of class {label}", channels=3, unit_range=True)
        if size is None:
            size = images.shape[-2:]
        elif images.shape[-2:] != size:
            raise InputError(
                f"all examples must have one size; got {tuple(size)} and {tuple(images.shape[-2:])}"
            )
        by_class[label] = images.to(device=device, dtype=torch.float32)
    first = by_class[min(by_class)]
    try:
        with torch.no_grad():
            was_training = model.training
            model.eval()
            logits = model(first[:8])
            model.train(was_training)
    except RuntimeError as err:
        first_line = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise InputError(
            f"images of shape {tuple(first.shape[1:])} do not fit the model: {first_line}"
        ) from None
    if logits.ndim != 2:
        raise InputError(f"the model returns outputs of shape {tuple(logits.shape)}, not (batch, classes)")
    if not bool(torch.isfinite(logits).all()):
        raise InputError("the model's logits on the example images are not finite (NaN or Inf)")
    num_classes = int(logits.shape[1])
    bad = [c for c in by_class if c >= num_classes]
    if bad:
        raise InputError(f"example classes {bad} are not classes of this {num_classes}-class model")
    return Examples(by_class, num_classes)


def subset(images: torch.Tensor, n: int, generator: torch.Generator) -> torch.Tensor:
    """At most ``n`` rows of ``images``: all of them if there are no more, else a seeded random choice."""
    if len(images) <= n:
        return images
    order = torch.randperm(len(images), generator=generator)[:n].sort().values
    return images[order.to(images.device)]
