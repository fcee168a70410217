"""The evaluation's on-disk cache: one JSON file per (stage, model) in the output directory.

``OUT/cache/scan-<scanner>/<model>.json`` holds the scanner's found triggers (rebuilt with
:meth:`~exray.scanners.FoundTrigger.from_dict`); ``OUT/cache/<method>/<model>.json`` holds a method's
per-trigger scores (:class:`~exray.refinement.TriggerScore`) for the triggers it judged. Every file records
the key of the settings it was computed with (a hash of everything its numbers depend on, including the
key of the scan it judged); a file with another key, or one that recorded an error, is computed again.
Files are written through a temporary file and renamed, so an interrupted run leaves no torn file.
Records written under an older key scheme that are still valid are read too (``legacy_keys``).
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from exray.models.io import PICKLE_FILE, WEIGHTS_FILE

#: Part of every refinement method's cache key: bump it when a change of code changes the scores that the
#: same settings give (2: mask early stopping waits for a decided mask; 3: a degenerate mask never by itself
#: makes a trigger natural; 4: the mask optimiser's Adam takes its bias corrections in float64, as
#: torch.optim.Adam — exray.optim.StackedAdam), so that stale caches are redone.
SCORES_REVISION = 4


def settings_key(settings: dict[str, Any]) -> str:
    """A short stable hash of JSON-able ``settings``."""
    text = json.dumps(settings, sort_keys=True, default=repr)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def model_digest(path: Path) -> str:
    """A short hash of a model's weights (``model.safetensors``, else ``model.pt``, or the file itself):
    a record computed on other weights — a zoo rebuilt into the same place — is not reused."""
    path = Path(path)
    candidates = [path] if path.is_file() else [path / WEIGHTS_FILE, path / PICKLE_FILE]
    for candidate in candidates:
        if candidate.is_file():
            digest = hashlib.sha256()
            with candidate.open("rb") as handle:
                for chunk in iter(lambda: handle.read(1 << 20), b""):
                    digest.update(chunk)
            return digest.hexdigest()[:16]
    return ""


class StageCache:
    """Records of one stage (a scan, or a refinement method), one file per model."""

    def __init__(self, root: Path, stage: str, key: str, legacy_keys: Mapping[str, bool] | None = None):
        self.directory = Path(root) / stage
        self.key = key
        # keys of records written under an older scheme that are still valid -> whether the key held the
        # gate (such a record is marked ``"legacy": True``: it was judged from the gate of its run)
        self.legacy_keys = dict(legacy_keys or {})

    def path(self, model: str) -> Path:
        return self.directory / f"{model}.json"

    def load(self, model: str) -> dict[str, Any] | None:
        """The model's record if it was computed with this key and without an error, else ``None``."""
        try:
            record = json.loads(self.path(model).read_text())
        except (OSError, json.JSONDecodeError):
            return None
        if not isinstance(record, dict) or record.get("error"):
            return None
        if record.get("key") == self.key:
            return record
        if record.get("key") in self.legacy_keys:
            return {**record, "legacy": True} if self.legacy_keys[record["key"]] else record
        return None

    def save(self, model: str, record: dict[str, Any]) -> dict[str, Any]:
        """Write ``record`` (with this cache's key) atomically and return it."""
        record = {**record, "key": self.key}
        self.directory.mkdir(parents=True, exist_ok=True)
        path = self.path(model)
        temporary = path.with_suffix(f".tmp{os.getpid()}")
        temporary.write_text(json.dumps(record) + "\n")
        temporary.replace(path)
        return record
