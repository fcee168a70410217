"""One settings toolkit (issue 21 §3): the checks every validated settings object uses, and :class:`Options`,
the mixin of the frozen option dataclasses (scanners, detectors, attacks, EX-RAY's mask optimisation).

Each check raises a one-line :class:`~exray.errors.ConfigError` that names the option, so a bad setting
fails where it is made, before any model is touched. (Spec files are read with
:class:`exray.specfile.Section`, which names the key's path in the file instead.)
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping, Sequence
from dataclasses import asdict, fields
from typing import Any

from exray.errors import ConfigError

#: Largest value an option may take where it sets no smaller bound (beyond it, a typo).
MAX_OPTION = 10**9


def is_int(value: Any) -> bool:
    """An integer (numpy's too), not a bool."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def is_real(value: Any) -> bool:
    """A finite real number (int or float, numpy's too), not a bool."""
    if not isinstance(value, numbers.Real) or isinstance(value, bool):
        return False
    try:
        return math.isfinite(float(value))
    except OverflowError:  # an int beyond any float
        return False


def check_int(name: str, value: Any, lo: int = 1, hi: int | None = None) -> None:
    """``value`` is an integer in [lo, hi] (no upper bound when ``hi`` is None)."""
    if not is_int(value) or value < lo or (hi is not None and value > hi):
        bound = f">= {lo}" if hi is None else f"in [{lo}, {hi:.0e}]" if hi >= 10**6 else f"in [{lo}, {hi}]"
        raise ConfigError(f"{name} must be an integer {bound}, got {value!r:.60}")


def check_real(
    name: str, value: Any, lo: float = -math.inf, hi: float = math.inf, *, low_open: bool = False,
    high_open: bool = False,
) -> None:  # fmt: skip
    """``value`` is a finite number in the interval from ``lo`` to ``hi`` (ends closed unless open)."""
    ok = is_real(value)
    if ok:
        v = float(value)
        ok = (v > lo if low_open else v >= lo) and (v < hi if high_open else v <= hi)
    if not ok:
        interval = f"{'(' if low_open else '['}{lo:g}, {hi:g}{')' if high_open else ']'}"
        raise ConfigError(f"{name} must be a finite number in {interval}, got {value!r:.60}")


def check_choice(name: str, value: Any, choices: Sequence[Any]) -> None:
    """``value`` is one of ``choices``."""
    if value not in tuple(choices):
        raise ConfigError(f"{name} must be one of {tuple(choices)}, got {value!r:.60}")


def check_layer(name: str, value: Any) -> None:
    """``value`` is None or a non-empty layer name (a module name or ``block:K``)."""
    if value is not None and (not isinstance(value, str) or not value):
        raise ConfigError(f"{name} must be None or a module name, got {value!r:.60}")


class Options:
    """Mixin for frozen option dataclasses: validation shortcuts and a JSON-able ``to_dict``."""

    def to_dict(self) -> dict[str, Any]:
        """The options as JSON-able values: tuples as lists, numpy scalars as Python numbers (the checks
        accept both; records, cache keys and reports see one)."""
        return {k: _plain(v) for k, v in asdict(self).items()}  # type: ignore[call-overload]

    def _positive_int(self, *names: str) -> None:
        for name in names:
            check_int(name, getattr(self, name), 1, MAX_OPTION)

    def _positive(self, *names: str) -> None:
        for name in names:
            check_real(name, getattr(self, name), 0.0, MAX_OPTION, low_open=True)

    def _fraction(self, *names: str, closed: bool = True) -> None:
        for name in names:
            check_real(name, getattr(self, name), 0.0, 1.0, low_open=not closed, high_open=not closed)


def _plain(value: Any) -> Any:
    if isinstance(value, tuple | list):
        return [_plain(v) for v in value]
    if (
        isinstance(value, numbers.Number)
        and not isinstance(value, bool | int | float)
        and hasattr(value, "item")
    ):
        return value.item()
    return value


def make_options(cls: type, options: Mapping[str, Any]) -> Any:
    """``cls(**options)`` with unknown option names reported as :class:`ConfigError`."""
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(options) - known)
    if unknown:
        raise ConfigError(f"unknown option(s) {unknown}; valid options: {sorted(known)}")
    return cls(**options)
