"""The scanner interface, validated options and the scanner registry (issue 4; ART-style parameters).

``get_scanner(name, **options)`` builds a registered scanner; its options are a frozen dataclass whose
``__post_init__`` raises :class:`~exray.errors.ConfigError` for anything invalid, so a bad option fails at
construction, not in the middle of a scan.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import asdict, fields
from typing import Any, ClassVar

import torch
from torch import nn

from exray.errors import ConfigError
from exray.scanners.result import ScannerResult

#: Largest numeric scanner option accepted: counts, rates and weights beyond it are typos (or infinity),
#: and would make an inversion run forever or turn its loss into NaN.
MAX_OPTION = 10**9


class Options:
    """Mixin for frozen option dataclasses: validation helpers and a JSON-able ``to_dict``."""

    def to_dict(self) -> dict[str, Any]:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}  # type: ignore[call-overload]

    def _positive_int(self, *names: str) -> None:
        for name in names:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_OPTION:
                raise ConfigError(f"{name} must be an integer in [1, {MAX_OPTION:.0e}], got {value!r}")

    def _positive(self, *names: str) -> None:
        for name in names:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value <= MAX_OPTION:
                raise ConfigError(f"{name} must be a number in (0, {MAX_OPTION:.0e}], got {value!r}")

    def _fraction(self, *names: str, closed: bool = True) -> None:
        for name in names:
            value = getattr(self, name)
            ok = isinstance(value, int | float) and not isinstance(value, bool)
            ok = ok and (0.0 <= value <= 1.0 if closed else 0.0 < value < 1.0)
            if not ok:
                interval = "[0, 1]" if closed else "(0, 1)"
                raise ConfigError(f"{name} must be a number in {interval}, got {value!r}")


def make_options(cls: type, options: Mapping[str, Any]) -> Any:
    """``cls(**options)`` with unknown option names reported as :class:`ConfigError`."""
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(options) - known)
    if unknown:
        raise ConfigError(f"unknown option(s) {unknown}; valid options: {sorted(known)}")
    return cls(**options)


class Scanner(ABC):
    """Finds candidate triggers in a model from a few clean examples per class."""

    name: ClassVar[str]

    @abstractmethod
    def scan(
        self,
        model: nn.Module,
        examples: Mapping[int, torch.Tensor],
        *,
        layer: str | None = None,
        seed: int = 0,
        progress: bool = False,
    ) -> ScannerResult:
        """Scan ``model`` with ``{class: Tensor[N, 3, H, W]}`` clean examples in [0, 1].

        ``layer``: module name of the inner layer or a ``"block:K"`` selector
        (:func:`exray.models.layers.resolve_layer`; default ``"block:-2"``, the second-to-last conv block).
        ``seed``: every random choice derives from it. ``progress``: show progress bars.
        """

    @abstractmethod
    def options(self) -> dict[str, Any]:
        """The scanner's options as a JSON-able dict."""


class ConfiguredScanner(Scanner):
    """A scanner whose options are one :class:`Options` dataclass, ``config_class``: ``self.config`` holds
    them validated (unknown names are a :class:`ConfigError`) and :meth:`options` returns them as a dict."""

    config_class: ClassVar[type[Options]]

    def __init__(self, **options: Any):
        self.config = make_options(self.config_class, options)

    def options(self) -> dict[str, Any]:
        return self.config.to_dict()


_SCANNERS: dict[str, Callable[..., Scanner]] = {}


def register_scanner(name: str) -> Callable[[Callable[..., Scanner]], Callable[..., Scanner]]:
    """Decorator: make a scanner factory (class or function taking options) available to ``get_scanner``."""

    def decorate(factory: Callable[..., Scanner]) -> Callable[..., Scanner]:
        if name in _SCANNERS and _SCANNERS[name] is not factory:
            raise ConfigError(f"scanner {name!r} is already registered")
        _SCANNERS[name] = factory
        return factory

    return decorate


def get_scanner(name: str, **options: Any) -> Scanner:
    """A scanner by registry name (``"abs"``, ``"nc"``, ``"nc_universal"``) with validated options."""
    if name not in _SCANNERS:
        raise ConfigError(f"unknown scanner {name!r}; registered: {sorted(_SCANNERS)}")
    return _SCANNERS[name](**options)


def list_scanners() -> list[str]:
    """Registered scanner names."""
    return sorted(_SCANNERS)
