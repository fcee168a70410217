"""TrojAI's pickled torchvision models, loaded without running code from the file (issue 18 §1).

A TrojAI round 1–4 ``model.pt`` is a whole torchvision model saved with ``torch.save``. Unpickling it the
ordinary way imports and calls whatever the file names — arbitrary code — and needs torchvision. exray
instead unpickles it with PyTorch's restricted ``weights_only`` unpickler, which admits tensors, containers
and only the globals it is given: here torchvision's class paths mapped to exray's own implementations of
those architectures (same module names, attributes and state-dict keys, so the weights land where
torchvision put them) and the ``torch.nn`` layers they are built of. Anything else in the file — another
class, a ``__reduce__`` payload — stops the load before it runs, with the offending name
(:func:`load_pickled_model`). Supported now: ResNet-18/34/50/101/152, Wide-ResNet-50-2/101-2,
VGG-11/13/16/19-BN, MobileNetV2, DenseNet-121/161/169/201, SqueezeNet 1.0/1.1, ShuffleNetV2 ×0.5–2.0,
GoogLeNet and Inception-v3 — TrojAI rounds 1–4's set; ``--trust-pickle`` remains the opt-in for every
other model.

:data:`BUILDERS` builds each architecture fresh (torchvision's names: ``"resnet50"``, ``"vgg16_bn"``, …):
a model directory whose ``config.json`` names ``"torchvision:resnet50"`` loads its state dict
(``model.safetensors``, or a ``model.pt`` holding only tensors) into it.
"""

from __future__ import annotations

import pickle
import re
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from exray.errors import ConfigError, ModelLoadError, UntrustedModelError
from exray.models.torchvision_compat import (
    densenet,
    inception,
    mobilenet,
    resnet,
    shufflenet,
    squeezenet,
    vgg,
)

_FAMILIES = (resnet, vgg, mobilenet, densenet, squeezenet, shufflenet, inception)

#: torchvision class path → exray's implementation.
CLASSES: dict[str, type[nn.Module]] = {k: v for family in _FAMILIES for k, v in family.CLASSES.items()}
#: The classes a pickled model's root object may be.
ARCHITECTURES: frozenset[type[nn.Module]] = frozenset(
    {
        resnet.ResNet,
        vgg.VGG,
        mobilenet.MobileNetV2,
        densenet.DenseNet,
        squeezenet.SqueezeNet,
        shufflenet.ShuffleNetV2,
        inception.GoogLeNet,
        inception.Inception3,
    }
)
#: torchvision architecture name → builder(num_classes=1000).
BUILDERS: dict[str, Callable[..., nn.Module]] = {
    k: v for family in _FAMILIES for k, v in family.BUILDERS.items()
}
#: The torch.nn layers these architectures are made of (PyTorch's own code, nothing from the file).
TORCH_LAYERS: tuple[type[nn.Module], ...] = (
    nn.Conv2d,
    nn.BatchNorm2d,
    nn.ReLU,
    nn.ReLU6,
    nn.MaxPool2d,
    nn.AvgPool2d,
    nn.AdaptiveAvgPool2d,
    nn.Linear,
    nn.Dropout,
    nn.Sequential,
    nn.ModuleList,
    nn.Identity,
    nn.Flatten,
)

_GLOBAL = re.compile(r"GLOBAL ([\w.]+)")


def allowed_globals() -> list[object]:
    """What the restricted unpickler may build: torchvision's paths as exray's classes, torch.nn layers."""
    return [(cls, path) for path, cls in CLASSES.items()] + list(TORCH_LAYERS)


def load_pickled(file: str | Path) -> Any:
    """Unpickle ``file`` without running code from it: tensors, containers, and the classes of
    :func:`allowed_globals` only (a whole torchvision model, or a state dict).

    Raises :class:`UntrustedModelError` naming the first global outside the allowlist (an architecture exray
    does not rebuild, or anything else the file asks to import or call), :class:`ModelLoadError` when the
    file is not a readable pickle.
    """
    try:
        with warnings.catch_warnings(), torch.serialization.safe_globals(allowed_globals()):
            warnings.simplefilter("ignore")  # torch's notes on pickle protocols: the refusal says it all
            return torch.load(str(file), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        found = _GLOBAL.search(str(err))
        if found is not None:
            needs = f"needs {found.group(1)}, which exray does not rebuild"
        else:  # e.g. a raw pickle stream whose opcodes the restricted unpickler does not run
            reason = next((line for line in str(err).splitlines()[1:] if line.strip()), "")
            reason = reason.split("WeightsUnpickler error:")[-1].strip() or "an unsupported construct"
            needs = f"holds what exray does not unpickle ({reason:.120})"
        known = ", ".join(sorted(cls.__name__ for cls in ARCHITECTURES))
        raise UntrustedModelError(
            f"{file} is a pickled model that {needs} without running code from the file. Load it only if "
            "you trust its source, with trust_pickle=True (CLI: --trust-pickle); exray rebuilds "
            f"torchvision's {known} safely."
        ) from None
    except Exception as err:  # a truncated or foreign file fails in many ways; all mean "cannot load"
        raise ModelLoadError(f"{file} could not be unpickled: {type(err).__name__}: {err}") from None


def build(name: str, num_classes: int) -> nn.Module:
    """torchvision's architecture ``name`` (``"resnet50"``, …; :data:`BUILDERS`) for ``num_classes``."""
    if name not in BUILDERS:
        raise ConfigError(f"unknown torchvision architecture {name!r}; exray rebuilds {sorted(BUILDERS)}")
    return BUILDERS[name](num_classes=num_classes)


def load_pickled_model(file: str | Path) -> nn.Module:
    """A whole torchvision model from ``file``, as :func:`load_pickled` (see :func:`check_root`)."""
    return check_root(load_pickled(file), file)


def check_root(model: Any, file: str | Path) -> nn.Module:
    """``model`` if it is one of the :data:`ARCHITECTURES`: ``ModelLoadError`` if it is no ``nn.Module``,
    ``UntrustedModelError`` if it is another module (one only a trusted, ordinary unpickling may load)."""
    if not isinstance(model, nn.Module):
        raise ModelLoadError(f"{file} holds a {type(model).__name__}, not a whole torch.nn.Module")
    if type(model) not in ARCHITECTURES:
        raise UntrustedModelError(
            f"{file} holds a bare {type(model).__name__}, not one of the torchvision architectures exray "
            "rebuilds; load it only if you trust its source, with trust_pickle=True (CLI: --trust-pickle)."
        )
    return model


__all__ = [
    "ARCHITECTURES",
    "BUILDERS",
    "CLASSES",
    "allowed_globals",
    "build",
    "check_root",
    "load_pickled",
    "load_pickled_model",
]
