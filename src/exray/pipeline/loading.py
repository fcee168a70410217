"""One loader for a scan's inputs (issue 21 §2): a model with its clean examples, cropped as the model needs
them — the same rule for `exray scan` (:func:`~exray.pipeline.scan_model_dir`) and `exray trojai`."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from exray.data.examples import load_examples
from exray.data.images import center_crop
from exray.models.io import example_crop_size, input_image_size, load_model


def load_scan_inputs(
    model_path: str | Path,
    examples_dir: str | Path | None = None,
    *,
    trust_pickle: bool = False,
    device: str = "auto",
) -> tuple[nn.Module, dict[int, torch.Tensor]]:
    """The model at ``model_path`` (:func:`~exray.models.io.load_model`; a pickled one only with
    ``trust_pickle``) and its clean examples — from ``examples_dir``, else from the model directory —
    centre-cropped by :func:`~exray.models.io.example_crop_size`: to the input size the directory states
    (cropped as they are read), else TrojAI's 224×224 for 256×256 examples (read whole, then cropped)."""
    model = load_model(model_path, trust_pickle=trust_pickle, device=device)
    source = Path(examples_dir if examples_dir is not None else model_path)
    stated = input_image_size(model)
    if stated is not None:
        return model, load_examples(source, size=stated)
    examples = load_examples(source)
    crop = example_crop_size(model, next(iter(examples.values())).shape[-1])
    if crop is not None:
        examples = {label: center_crop(images, crop).contiguous() for label, images in examples.items()}
    return model, examples
