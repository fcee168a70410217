"""The trigger interface and its registry.

A trigger transforms a batch of images (NCHW float in [0, 1]) into stamped images. Every trigger
serialises to a plain JSON-able dict whose ``"type"`` key names its class in the registry, so a model's
config.json can record it and :func:`trigger_from_config` can rebuild it. Injected triggers (spec §7.3.5–6)
and, later, reverse-engineered ones (ABS mask/pattern, filter maps) share this interface.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from typing import Any, ClassVar, Self, TypeVar

import numpy as np
import torch

from exray.data.images import check_images
from exray.errors import ConfigError, InputError


class Trigger(ABC):
    """A backdoor trigger: ``apply`` stamps a batch, ``to_config``/``from_config`` (de)serialise it.

    ``stamps_foreground`` marks triggers that belong to the foreground object rather than to the whole
    image (the TrojAI polygon): a generator that composites a foreground applies them to the object before
    its geometric transforms, so they warp with it; applied post hoc they need the ``foreground`` masks.
    """

    type: ClassVar[str]
    stamps_foreground: ClassVar[bool] = False

    def apply(
        self,
        images: torch.Tensor,
        *,
        foreground: torch.Tensor | None = None,
        rng: np.random.Generator | None = None,
    ) -> torch.Tensor:
        """Stamped copy of ``images`` (N, 3, H, W) float in [0, 1]; the input is not modified.

        ``foreground``: (N, 1, H, W) or (N, H, W) masks of the foreground object (bool, or float
        thresholded at 0.5), for triggers confined to it. ``rng``: source of the per-image random choices
        of triggers that have any (e.g. placement); ``None`` means a generator seeded with 0.
        Validates ``images`` (InputError) and delegates to :meth:`_stamp`.
        """
        check_images(images, "images", channels=3, allow_empty=True)
        return self._stamp(images, foreground=foreground, rng=rng)

    @abstractmethod
    def _stamp(
        self,
        images: torch.Tensor,
        *,
        foreground: torch.Tensor | None,
        rng: np.random.Generator | None,
    ) -> torch.Tensor:
        """:meth:`apply` on validated ``images``: what each trigger type implements."""

    @abstractmethod
    def to_config(self) -> dict[str, Any]:
        """A JSON-able dict with a ``"type"`` key; ``from_config`` of it rebuilds an equal trigger."""

    @classmethod
    @abstractmethod
    def from_config(cls, config: Mapping[str, Any]) -> Self:
        """Rebuild a trigger from :meth:`to_config` output."""


_REGISTRY: dict[str, type[Trigger]] = {}
_T = TypeVar("_T", bound=type[Trigger])


def register_trigger(cls: _T) -> _T:
    """Class decorator: make ``cls`` constructible by :func:`trigger_from_config` under ``cls.type``."""
    key = getattr(cls, "type", None)
    if not isinstance(key, str) or not key:
        raise ConfigError(f"{cls.__name__} needs a non-empty string class attribute 'type'")
    existing = _REGISTRY.get(key)
    if existing is not None and existing is not cls:
        raise ConfigError(f"trigger type {key!r} is already registered by {existing.__name__}")
    _REGISTRY[key] = cls
    return cls


def registered_triggers() -> dict[str, type[Trigger]]:
    """A copy of the registry: trigger type → class."""
    return dict(_REGISTRY)


def trigger_from_config(config: Mapping[str, Any]) -> Trigger:
    """Rebuild any registered trigger from its config dict."""
    if not isinstance(config, Mapping) or "type" not in config:
        raise ConfigError(f"a trigger config must be a dict with a 'type' key, got {config!r}")
    cls = _REGISTRY.get(config["type"])
    if cls is None:
        raise ConfigError(f"unknown trigger type {config['type']!r}; registered: {sorted(_REGISTRY)}")
    return cls.from_config(config)


def check_config(
    config: Mapping[str, Any], cls: type[Trigger], required: set[str], optional: frozenset[str] = frozenset()
) -> None:
    """Raise ConfigError unless ``config`` has ``cls.type`` as its type and exactly the expected keys."""
    if not isinstance(config, Mapping):
        raise ConfigError(f"a {cls.type!r} trigger config must be a dict, got {type(config).__name__}")
    if config.get("type") != cls.type:
        raise ConfigError(f"expected a {cls.type!r} trigger config, got type {config.get('type')!r}")
    keys = set(config) - {"type"}
    missing, extra = required - keys, keys - required - optional
    if missing or extra:
        raise ConfigError(
            f"bad {cls.type!r} trigger config: missing {sorted(missing)}, unexpected {sorted(extra)}"
        )


def foreground_masks(foreground: torch.Tensor | None, images: torch.Tensor) -> torch.Tensor:
    """``foreground`` as a bool (N, H, W) tensor matching ``images``; InputError if missing or mismatched."""
    if foreground is None:
        raise InputError("this trigger is confined to the foreground: pass foreground masks")
    masks = foreground[:, 0] if foreground.ndim == 4 else foreground
    n, _, h, w = images.shape
    if masks.shape != (n, h, w):
        raise InputError(
            f"foreground masks of shape {tuple(foreground.shape)} do not match images {(n, h, w)}"
        )
    return masks if masks.dtype == torch.bool else masks > 0.5


def rgb_triple(values: Any, what: str) -> tuple[float, float, float]:
    """Validate a colour given as three numbers in [0, 1]."""
    triple = tuple(float(v) for v in values)
    if len(triple) != 3 or not all(0.0 <= v <= 1.0 for v in triple):
        raise ConfigError(f"{what} must be three numbers in [0, 1], got {values!r}")
    return triple  # type: ignore[return-value]
