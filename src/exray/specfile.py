"""Spec files (zoo specs, study specs): reading one without YAML aliases, and :class:`Section`, the typed,
range-checked reader of one of its mappings. Every problem is a one-line :class:`ConfigError` naming the
key (issue 20: hostile inputs; issue 21: one settings toolkit)."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from exray.errors import ConfigError, InputError
from exray.files import read_document

#: Largest integer a spec value may hold where its key sets no smaller bound; seeds end at 2⁶³ − 1.
MAX_SPEC_INT = 10**9
MAX_SEED = 2**63 - 1
#: A spec's name names directories and files: letters, digits, '-', '_', '.', at most this long.
MAX_NAME_LENGTH = 100


def check_name(section: Section, name: Any) -> None:
    """A spec's ``name``: usable as a file name on any system, else a ConfigError."""
    ok = isinstance(name, str) and 0 < len(name) <= MAX_NAME_LENGTH and not name.startswith(".")
    if not ok or not all(c.isascii() and (c.isalnum() or c in "-_.") for c in name):
        raise section.fail(
            "name",
            f"must be 1-{MAX_NAME_LENGTH} letters, digits, '-', '_' or '.' (not first), got {name!r:.120}",
        )


def load_document(path: str | Path, what: str) -> Any:
    """The parsed JSON (``.json``) or YAML document at ``path``; any problem is a ConfigError."""
    try:
        return read_document(path, what)
    except InputError as err:
        raise ConfigError(str(err)) from None


def load_spec_file(path: str | Path, kind: str, parse: Callable[..., Any], *, relative: bool = False) -> Any:
    """The one ``load_spec``: ``parse(document, default_name=<file stem>)`` of the spec file at ``path`` (JSON
    or YAML, :func:`load_document`), with ``base=<its folder>`` when the spec names other files relative to
    itself (``relative``, the study specs). A missing or unreadable file is a ConfigError naming ``kind``."""
    path = Path(path)
    extra = {"base": path.parent} if relative else {}
    return parse(load_document(path, kind), default_name=path.stem, **extra)


class Section:
    """One mapping of a spec file: rejects unknown keys, requires ``required`` ones, and reads typed,
    range-checked values. Errors are one line: ``"<kind>: 'a.b' must be ..."``."""

    def __init__(
        self,
        data: Any,
        path: str,
        allowed: Sequence[str],
        *,
        kind: str = "spec",
        required: Sequence[str] = (),
    ) -> None:
        where = f"'{path}'" if path else "the spec"
        if not isinstance(data, Mapping):
            raise ConfigError(f"{kind}: {where} must be a mapping, got {type(data).__name__}")
        self.data, self.path, self.kind = data, path, kind
        for key in data:
            if key not in allowed:
                scope = f"in '{path}'" if path else "at the top level"
                known = ", ".join(sorted(allowed))
                raise ConfigError(f"{kind}: unknown key {self.key(key)!r}; allowed keys {scope}: {known}")
        for key in required:
            if key not in data:
                raise ConfigError(f"{kind}: {self.key(key)!r} is required")

    def key(self, name: Any) -> str:
        return f"{self.path}.{name}" if self.path else str(name)

    def fail(self, name: str, message: str) -> ConfigError:
        return ConfigError(f"{self.kind}: {self.key(name)!r} {message}")

    def get(self, name: str, default: Any = None) -> Any:
        return self.data.get(name, default)

    def int(self, name: str, default: int | None, lo: int, hi: int | None = None) -> int:
        value = self.data.get(name, default)
        if value is None:
            raise self.fail(name, "is required")
        return self._int(name, value, lo, hi)

    def _int(self, name: str, value: Any, lo: int, hi: int | None) -> int:
        hi = MAX_SPEC_INT if hi is None else hi
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.fail(name, f"must be an integer, got {value!r}")
        if value < lo or (hi is not None and value > hi):
            bound = f"in [{lo}, {hi}]" if hi is not None else f">= {lo}"
            raise self.fail(name, f"must be {bound}, got {value}")
        return value

    def float(self, name: str, default: float, lo: float, hi: float, *, open_lo: bool = False) -> float:
        return self._float(name, self.data.get(name, default), lo, hi, open_lo)

    def _float(self, name: str, value: Any, lo: float, hi: float, open_lo: bool) -> float:
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            raise self.fail(name, f"must be a finite number, got {value!r}")
        if value < lo or value > hi or (open_lo and value == lo):
            raise self.fail(name, f"must be in {'(' if open_lo else '['}{lo}, {hi}], got {value}")
        return float(value)

    def bool(self, name: str, default: bool) -> bool:
        value = self.data.get(name, default)
        if not isinstance(value, bool):
            raise self.fail(name, f"must be true or false, got {value!r}")
        return value

    def choice(self, name: str, default: str, allowed: Sequence[str]) -> str:
        value = self.data.get(name, default)
        if value not in allowed:
            raise self.fail(name, f"must be one of {list(allowed)}, got {value!r}")
        return value

    def _pair(self, name: str, default: Sequence[Any]) -> list[Any]:
        value = self.data.get(name, default)
        if isinstance(value, list | tuple) and len(value) == 2:
            return list(value)
        raise self.fail(name, f"must be a range [lo, hi], got {value!r}")

    def int_range(self, name: str, default: Sequence[int], lo: int, hi: int | None = None) -> tuple[int, int]:
        a, b = (self._int(name, v, lo, hi) for v in self._pair(name, default))
        if a > b:
            raise self.fail(name, f"must be a range [lo, hi] with lo <= hi, got [{a}, {b}]")
        return a, b

    def float_range(
        self, name: str, default: Sequence[float], lo: float, hi: float, *, open_lo: bool = False
    ) -> tuple[float, float]:
        a, b = (self._float(name, v, lo, hi, open_lo) for v in self._pair(name, default))
        if a > b:
            raise self.fail(name, f"must be a range [lo, hi] with lo <= hi, got [{a}, {b}]")
        return a, b

    def choices(self, name: str, default: Sequence[Any], allowed: Sequence[Any]) -> tuple[Any, ...]:
        value = self._list(name, default)
        for item in value:
            if isinstance(item, bool) or item not in allowed:
                raise self.fail(name, f"has {item!r}; allowed: {list(allowed)}")
        return tuple(value)

    def _list(self, name: str, default: Sequence[Any]) -> list[Any]:
        value = self.data.get(name, default)
        if not isinstance(value, list | tuple) or not value:
            raise self.fail(name, f"must be a non-empty list, got {value!r}")
        if not all(isinstance(v, int | float | str) for v in value):
            raise self.fail(name, f"must list numbers or names, got {list(value)!r}")
        if len(set(value)) != len(value):
            raise self.fail(name, f"lists a value twice: {list(value)}")
        return list(value)

    def numbers(self, name: str, default: Sequence[float], lo: float, hi: float) -> tuple[float, ...]:
        """A list of numbers in (lo, hi]."""
        return tuple(self._float(name, v, lo, hi, True) for v in self._list(name, default))

    def ints(self, name: str, default: Sequence[int], lo: int, hi: int) -> tuple[int, ...]:
        return tuple(self._int(name, v, lo, hi) for v in self._list(name, default))

    def section(self, name: str, allowed: Sequence[str], required: Sequence[str] = ()) -> Section:
        return Section(self.data.get(name, {}), self.key(name), allowed, kind=self.kind, required=required)


def named_mapping(data: Any, path: str, kind: str = "spec") -> Mapping[str, Any]:
    """``data`` if it is a non-empty mapping of names (letters, digits, '-', '_') to settings."""
    if not isinstance(data, Mapping) or not data:
        raise ConfigError(f"{kind}: {path!r} must be a non-empty mapping of names to settings")
    for name in data:
        if not isinstance(name, str) or not name.replace("-", "").replace("_", "").isalnum():
            raise ConfigError(f"{kind}: names in {path!r} must be letters, digits, '-' or '_', got {name!r}")
    return data


def built(kind: str, path: str, build: Any, /, *args: Any, **kwargs: Any) -> Any:
    """``build(*args, **kwargs)`` — a validating constructor — with its ConfigError (or the TypeError of an
    unknown keyword, the ValueError of a bad value) prefixed by the spec path."""
    try:
        return build(*args, **kwargs)
    except (TypeError, ValueError) as err:  # ConfigError is a ValueError
        raise ConfigError(f"{kind}: {path!r}: {' '.join(str(err).split())[:300]}") from None
