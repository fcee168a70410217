"""A study's population: the ``zoo`` entry of a study spec, inline or a file (shared by the studies)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from exray.errors import ConfigError
from exray.specfile import built, load_document
from exray.zoo.spec import ZooSpec
from exray.zoo.spec import parse_spec as parse_zoo

#: Where a zoo spec named by path is looked up when it is not next to the study spec.
SHIPPED_ZOOS = Path(__file__).resolve().parents[1] / "zoo" / "specs"


def load_zoo(value: Any, base: Path | None, kind: str) -> ZooSpec:
    """A study's ``zoo``: an inline zoo spec mapping, or a path relative to the study spec (``base``) or the
    name of a shipped spec."""
    if isinstance(value, str):
        candidates = [Path(value)] if Path(value).is_absolute() else []
        if base is not None:
            candidates.append(base / value)
        candidates.append(SHIPPED_ZOOS / Path(value).name)
        for path in candidates:
            if path.is_file():
                return parse_zoo(load_document(path, "zoo spec"), default_name=path.stem)
        raise ConfigError(f"{kind}: 'zoo': spec file {value!r} not found next to the study spec or shipped")
    return built(kind, "zoo", parse_zoo, value)
