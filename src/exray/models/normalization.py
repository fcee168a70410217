"""Input normalisation stated by a model directory (issue 18 §2): exray feeds every model images in [0, 1],
so a model trained on normalised inputs gets its ``(x − mean) / std`` as the first step of its own forward.

``config.json``: ``"normalization": {"mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]}`` (one
value or one per channel). The step is part of ``forward`` itself — not a hook, not a wrapper — so every
module keeps its name (``--layer features.5`` still means the same module) and ``torch.fx`` traces it with
the rest, which the layer cut of :mod:`exray.models.layers` relies on.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from exray.errors import ModelLoadError

MEAN, STD = "exray_input_mean", "exray_input_std"


def check_normalization(value: Any, where: str) -> tuple[list[float], list[float]]:
    """``(mean, std)`` of a config's ``normalization`` entry: one or three finite numbers each, std > 0."""
    if not isinstance(value, dict) or set(value) != {"mean", "std"}:
        raise ModelLoadError(
            f"{where}: normalization must be {{'mean': [...], 'std': [...]}}, got {value!r:.80}"
        )
    out = []
    for key in ("mean", "std"):
        numbers = value[key] if isinstance(value[key], list) else [value[key]]
        ok = len(numbers) in (1, 3) and all(
            isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v) for v in numbers
        )
        if not ok or (key == "std" and min(numbers) <= 0):
            raise ModelLoadError(
                f"{where}: normalization {key} must be 1 or 3 finite numbers{' > 0' if key == 'std' else ''}"
            )
        out.append([float(v) for v in numbers])
    return out[0], out[1]


def normalize_inputs(model: nn.Module, mean: list[float], std: list[float]) -> nn.Module:
    """Make ``model`` (in place) compute ``(x − mean) / std`` per channel before its own forward; returns it.

    The model's class is swapped for a subclass whose ``forward`` normalises and calls the original one;
    mean and std are non-persistent buffers (they move with the model, stay out of its state dict). The
    subclass is made at run time, so such a model does not pickle whole: save its weights (``save_model``
    with the normalisation in the config) — exray never pickles a loaded model."""
    if hasattr(model, MEAN):
        raise ModelLoadError("the model already normalises its inputs")
    cls = type(model)
    original = cls.forward

    # One argument (fx traces no *args) and no annotations (fx copies them into traced code as text).
    def forward(self, x):
        return original(self, (x - getattr(self, MEAN)) / getattr(self, STD))

    model.register_buffer(MEAN, torch.tensor(mean).view(1, -1, 1, 1), persistent=False)
    model.register_buffer(STD, torch.tensor(std).view(1, -1, 1, 1), persistent=False)
    model.__class__ = type(
        f"Normalized{cls.__name__}", (cls,), {"forward": forward, "__module__": cls.__module__}
    )
    return model
