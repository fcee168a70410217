"""The evaluation's on-disk cache: one JSON file per (stage, model) in the output directory.

``OUT/cache/scan-<scanner>/<model>.json`` holds the scanner's found triggers (rebuilt with
:meth:`~exray.scanners.FoundTrigger.from_dict`); ``OUT/cache/<method>/<model>.json`` holds a method's
per-trigger scores (:class:`~exray.baselines.TriggerScore`) for the triggers it judged. Every file records
the key of the settings it was computed with (a hash of everything its numbers depend on, including the
key of the scan it judged); a file with another key, or one that recorded an error, is computed again.
Files are written through a temporary file and renamed, so an interrupted run leaves no torn file.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

#: Part of every refinement method's cache key: bump it when a change of code changes the scores that the
#: same settings give (2: mask early stopping waits for a decided mask), so that stale caches are redone.
SCORES_REVISION = 2


def settings_key(settings: dict[str, Any]) -> str:
    """A short stable hash of JSON-able ``settings``."""
    text = json.dumps(settings, sort_keys=True, default=repr)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


class StageCache:
    """Records of one stage (a scan, or a refinement method), one file per model."""

    def __init__(self, root: Path, stage: str, key: str):
        self.directory = Path(root) / stage
        self.key = key

    def path(self, model: str) -> Path:
        return self.directory / f"{model}.json"

    def load(self, model: str) -> dict[str, Any] | None:
        """The model's record if it was computed with this key and without an error, else ``None``."""
        try:
            record = json.loads(self.path(model).read_text())
        except (OSError, json.JSONDecodeError):
            return None
        if not isinstance(record, dict) or record.get("key") != self.key or record.get("error"):
            return None
        return record

    def save(self, model: str, record: dict[str, Any]) -> dict[str, Any]:
        """Write ``record`` (with this cache's key) atomically and return it."""
        record = {**record, "key": self.key}
        self.directory.mkdir(parents=True, exist_ok=True)
        path = self.path(model)
        temporary = path.with_suffix(f".tmp{os.getpid()}")
        temporary.write_text(json.dumps(record) + "\n")
        temporary.replace(path)
        return record
