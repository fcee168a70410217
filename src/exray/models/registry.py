"""Architecture registry: build any registered network from its name and keyword arguments.

A model directory stores only ``architecture`` + ``arch_kwargs`` + weights (design §4); loading rebuilds the
network from this registry, so no pickled code is ever executed.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from torch import nn

from exray.errors import ConfigError

Builder = Callable[..., nn.Module]


@dataclass(frozen=True)
class Architecture:
    """A registered architecture: its builder and the keyword arguments it accepts."""

    name: str
    builder: Builder
    defaults: dict[str, Any] = field(default_factory=dict)
    summary: str = ""
    analytic: bool = False

    def parameters(self) -> dict[str, Any]:
        """Accepted keyword arguments (besides ``num_classes``) with their default values."""
        signature = inspect.signature(self.builder)
        params = {
            name: p.default
            for name, p in signature.parameters.items()
            if name != "num_classes" and p.kind is p.KEYWORD_ONLY
        }
        params.update(self.defaults)
        return params


_REGISTRY: dict[str, Architecture] = {}


def register_architecture(
    name: str, *, summary: str = "", analytic: bool = False, **defaults: Any
) -> Callable[[Builder], Builder]:
    """Register ``builder(num_classes, *, **kwargs) -> nn.Module`` under ``name`` (with preset kwargs).

    ``analytic=True`` marks hand-wired networks (fixed weights, for tests and demonstrations) that are
    not listed among the trainable architectures.
    """

    def decorate(builder: Builder) -> Builder:
        if name in _REGISTRY:
            raise ConfigError(f"architecture {name!r} is already registered")
        doc = summary or (builder.__doc__ or "").strip()
        _REGISTRY[name] = Architecture(name, builder, dict(defaults), doc, analytic)
        return builder

    return decorate


def list_architectures(*, include_analytic: bool = False) -> list[str]:
    """Names of the registered trainable architectures (and the hand-wired ones if asked), sorted."""
    return sorted(name for name, arch in _REGISTRY.items() if include_analytic or not arch.analytic)


def get_architecture(name: str) -> Architecture:
    """The registered :class:`Architecture` called ``name`` (``ConfigError`` listing the known ones)."""
    try:
        return _REGISTRY[name]
    except KeyError:
        known = ", ".join(list_architectures(include_analytic=True))
        raise ConfigError(f"unknown architecture {name!r}; registered architectures: {known}") from None


def build_model(name: str, num_classes: int, **kwargs: Any) -> nn.Module:
    """Build the registered architecture ``name`` for ``num_classes`` classes, in eval mode.

    The model records how it was built (``model.exray_arch``) so that :func:`exray.models.save_model` can
    write a ``config.json`` from which :func:`exray.load_model` rebuilds it.
    """
    arch = get_architecture(name)
    if not isinstance(num_classes, int) or num_classes < 2:
        raise ConfigError(f"num_classes must be an integer >= 2, got {num_classes!r}")
    accepted = arch.parameters()
    unknown = sorted(set(kwargs) - set(accepted))
    if unknown:
        raise ConfigError(f"architecture {name!r} does not accept {unknown}; it accepts {sorted(accepted)}")
    merged = {**arch.defaults, **kwargs}
    model = arch.builder(num_classes, **merged)
    model.exray_arch = {"architecture": name, "arch_kwargs": dict(kwargs), "num_classes": num_classes}
    return model.eval()


#: Largest model a spec file may declare: 2 GiB of parameters and buffers.
MAX_SPEC_MODEL_BYTES = 2**31


def check_buildable(name: str, num_classes: int, kwargs: dict[str, Any]) -> int:
    """Bytes of parameters and buffers of ``build_model(name, num_classes, **kwargs)``, measured on PyTorch's
    meta device (nothing allocated); a ConfigError if it does not build or exceeds
    :data:`MAX_SPEC_MODEL_BYTES` — so that a spec declaring width 10⁶ is refused, not allocated."""
    import torch

    try:
        with torch.device("meta"):
            shell = build_model(name, num_classes, **kwargs)
    except ConfigError:
        raise
    except (TypeError, ValueError, OverflowError, RecursionError, RuntimeError) as err:
        lines = str(err).strip().splitlines()
        raise ConfigError(f"{name} does not build with {kwargs}: {lines[0] if lines else err!r}") from None
    size = sum(t.numel() * t.element_size() for t in (*shell.parameters(), *shell.buffers()))
    if size > MAX_SPEC_MODEL_BYTES:
        raise ConfigError(
            f"{name} with {kwargs} holds {size:,} bytes of weights; the limit is {MAX_SPEC_MODEL_BYTES:,}"
        )
    return size
