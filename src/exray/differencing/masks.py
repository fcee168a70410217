"""Public entry point for one mask, and the feature extraction shared with the verdicts."""

from __future__ import annotations

import torch
from torch import nn

from exray.data.images import check_images
from exray.differencing.config import MaskConfig, Sides, check_sides
from exray.differencing.optimizer import optimize_masks
from exray.differencing.problem import MaskProblem, MaskResult
from exray.errors import InputError
from exray.models.layers import Backend, LayerCut, resolve_layer
from exray.models.runtime import model_device
from exray.utils import derive_seed


def make_cut(
    model: nn.Module, layer: str | None, sample: torch.Tensor, backend: Backend = "auto"
) -> LayerCut:
    """A :class:`LayerCut` at ``layer``, or at the default layer found with a probe on ``sample``."""
    check_images(sample)
    try:
        name = resolve_layer(model, layer, sample[:1].to(model_device(model)))
    except RuntimeError as err:
        raise InputError(f"images of shape {tuple(sample.shape[1:])} do not fit the model: {err}") from None
    return LayerCut(model, name, backend=backend)


def extract(cut: LayerCut, images: torch.Tensor, name: str) -> tuple[torch.Tensor, torch.Tensor]:
    """(features, logits) of ``images`` at ``cut``, with clear errors for images the model cannot take."""
    check_images(images, name, unit_range=True)
    images = images.to(model_device(cut.model))
    try:
        feats = cut.features(images)
        logits = cut.logits(feats, images if cut.needs_inputs else None)
    except RuntimeError as err:
        raise InputError(f"{name} of shape {tuple(images.shape[1:])} do not fit the model: {err}") from None
    return feats, logits


def check_label(label: int, num_classes: int, name: str) -> None:
    if isinstance(label, bool) or not isinstance(label, int) or not 0 <= label < num_classes:
        raise InputError(f"{name} must be a class index in [0, {num_classes}), got {label!r}")


def symmetric_mask(
    model: nn.Module,
    *,
    a: torch.Tensor,
    b: torch.Tensor,
    label_a: int,
    label_b: int,
    layer: str | None = None,
    sides: Sides = "both",
    paired: bool | None = None,
    config: MaskConfig | None = None,
    seed: int = 0,
    backend: Backend = "auto",
    progress: bool = False,
) -> MaskResult:
    """The smallest set of feature maps at ``layer`` whose swap flips a ↔ b (paper §3.1, spec §4.3–4.4).

    ``a``/``b`` are images (N, 3, H, W) in [0, 1] of classes ``label_a``/``label_b``. ``layer``: a module
    name, or ``"block:K"`` for the output of convolutional block K (default: ``"block:-2"``, the
    second-to-last). ``sides`` selects the
    symmetric mask (``"both"``) or a one-sided one: ``"a_to_b"`` only requires a-images with b's masked
    channels to become ``label_b``; ``"b_to_a"`` only the reverse. ``paired`` (default: equal set sizes)
    pairs row j of a with row j of b; otherwise pairs are redrawn each epoch. ``layer`` defaults to the
    output of the second-to-last convolutional block.
    """
    check_sides(sides)
    cut = make_cut(model, layer, a, backend)
    feats_a, logits_a = extract(cut, a, "a")
    feats_b, _ = extract(cut, b, "b")
    for label, name in ((label_a, "label_a"), (label_b, "label_b")):
        check_label(label, logits_a.shape[1], name)
    problem = MaskProblem(
        a=feats_a,
        b=feats_b,
        label_a=label_a,
        label_b=label_b,
        sides=sides,
        paired=len(a) == len(b) if paired is None else paired,
        seed=derive_seed(seed, "mask", label_a, label_b),
        inputs_a=a if cut.needs_inputs else None,
        inputs_b=b if cut.needs_inputs else None,
    )
    return optimize_masks(cut, [problem], config, progress=progress)[0]
