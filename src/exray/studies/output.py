"""A study's files: its table as markdown and CSV and its results as JSON, under one stem
(``study-<name>``)."""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any


def write_study_files(
    out: str | Path,
    stem: str,
    markdown: str,
    rows: Iterable[Mapping[str, Any]],
    columns: Sequence[str],
    results: Mapping[str, Any] | None = None,
) -> dict[str, Path]:
    """``out/<stem>.md``, ``.csv`` (``rows`` in ``columns``; floats to 4 decimals) and, with ``results``,
    ``.json``; returns their paths by kind."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"markdown": out / f"{stem}.md", "csv": out / f"{stem}.csv"}
    paths["markdown"].write_text(markdown)
    with paths["csv"].open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(columns))
        writer.writeheader()
        for row in rows:
            writer.writerow({k: (f"{row[k]:.4f}" if isinstance(row[k], float) else row[k]) for k in columns})
    if results is not None:
        paths["json"] = out / f"{stem}.json"
        paths["json"].write_text(json.dumps(results, indent=2, default=str) + "\n")
    return paths
