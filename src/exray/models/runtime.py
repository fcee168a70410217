"""Running a model as the scanners, EX-RAY and the detectors need it: its device, frozen weights, and
predictions in eval mode without gradients, and the class stamped images are sent to (issue 21: one home for
model plumbing)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn


def model_device(model: nn.Module) -> torch.device:
    """The device of the model's first parameter or buffer (CPU for a parameter-free model)."""
    for tensor in [*model.parameters(), *model.buffers()]:
        return tensor.device
    return torch.device("cpu")


@contextmanager
def frozen(model: nn.Module) -> Iterator[None]:
    """Eval mode and no parameter gradients (only masks or triggers are optimised); restored on exit."""
    was_training = model.training
    flags = [(p, p.requires_grad) for p in model.parameters()]
    model.eval()
    for p, _ in flags:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p, flag in flags:
            p.requires_grad_(flag)
        model.train(was_training)


def predict_logits(model: nn.Module, images: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
    """Logits of ``images`` in eval mode, without gradients, in batches (the mode is restored)."""
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            return torch.cat([model(images[i : i + batch_size]) for i in range(0, len(images), batch_size)])
    finally:
        model.train(was_training)


def predict_labels(model: nn.Module, images: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
    """Predicted classes (N,) of ``images``: the argmax of :func:`predict_logits`."""
    return predict_logits(model, images, batch_size).argmax(dim=1)


def derive_target(predictions: torch.Tensor, victim_label: int) -> int:
    """Target class of a trigger from the predictions on stamped victim images (spec §4.2).

    The most frequent predicted label; if that is the victim itself, the second most frequent; −1 if the
    stamped images are all still classified as the victim.
    """
    ranked = [label for label, _ in Counter(predictions.tolist()).most_common()]
    ranked = [label for label in ranked if label != victim_label]
    return ranked[0] if ranked else -1
