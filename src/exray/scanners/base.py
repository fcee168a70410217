"""The scanner interface, validated options and the scanner registry (issue 4; ART-style parameters).

``get_scanner(name, **options)`` builds a registered scanner; its options are a frozen dataclass
(:class:`exray.options.Options`, the settings toolkit) whose ``__post_init__`` raises
:class:`~exray.errors.ConfigError` for anything invalid, so a bad option fails at construction, not in the
middle of a scan.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import nn

from exray.errors import ConfigError, InputError
from exray.models.runtime import frozen
from exray.options import MAX_OPTION as MAX_OPTION  # re-exported: the scanners' options were born here
from exray.options import Options as Options
from exray.options import make_options as make_options
from exray.scanners.common import Examples, check_examples
from exray.scanners.result import FoundTrigger, ScannerResult


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


class StageClock:
    """Seconds per stage of a scan: :meth:`lap` records the time since the previous lap (or the start, or
    :meth:`restart`) under a stage's name."""

    def __init__(self) -> None:
        self.timings: dict[str, float] = {}
        self._last = time.perf_counter()

    def restart(self) -> None:
        self._last = time.perf_counter()

    def lap(self, stage: str) -> None:
        now = time.perf_counter()
        self.timings[stage] = now - self._last
        self._last = now


@dataclass
class Stages:
    """What a scanner's stages found: the validated triggers, the diagnostics, the inner layer used."""

    triggers: list[FoundTrigger]
    diagnostics: dict[str, Any]
    layer: str | None


class StagedScanner(ConfiguredScanner):
    """The template method of a scan (TrojanZoo-style): :meth:`scan` checks the examples (at least two
    classes) and the call (:meth:`check_scan`), freezes the model, runs the scanner's :meth:`run_stages` —
    propose tasks, invert, validate into found triggers, each stage timed on a
    :class:`StageClock` — and packs the :class:`ScannerResult`."""

    #: The scanner's name in messages.
    title: ClassVar[str]

    def scan(
        self,
        model: nn.Module,
        examples: Mapping[int, torch.Tensor],
        *,
        layer: str | None = None,
        seed: int = 0,
        progress: bool = False,
    ) -> ScannerResult:
        clock = StageClock()
        data = check_examples(model, examples)
        if data.num_classes < 2:
            raise InputError(f"{self.title} needs a model with at least two classes")
        self.check_scan(data, layer)
        with frozen(model):
            found = self.run_stages(model, data, layer=layer, seed=seed, progress=progress, clock=clock)
        return ScannerResult(
            self.result_name,
            found.triggers,
            clock.timings,
            found.diagnostics,
            found.layer,
            seed,
            self.options(),
        )

    @property
    def result_name(self) -> str:
        """The name the result records (the registry name by default)."""
        return self.name

    def check_scan(self, data: Examples, layer: str | None) -> None:
        """Refuse a call this scanner cannot honour (before the model is touched); nothing by default."""

    @abstractmethod
    def run_stages(
        self,
        model: nn.Module,
        data: Examples,
        *,
        layer: str | None,
        seed: int,
        progress: bool,
        clock: StageClock,
    ) -> Stages:
        """The scanner's stages on the frozen ``model``."""


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
