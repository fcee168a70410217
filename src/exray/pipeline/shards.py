"""Splitting a batch scan over the tasks of a job array, and merging their results (issue 18 §5).

Thousands of models do not fit one machine's processes. A Slurm job array (or a Kubernetes indexed Job)
runs the same ``exray scan`` command in N tasks; task I scans the models at positions I, I + N, I + 2N, …
of the sorted model list and writes its own results file, and ``exray merge`` joins the files. Every task
sees the same list, so the shards partition it exactly, and each shard resumes like any scan.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from exray.errors import ConfigError
from exray.files import check_writable, read_results

#: Most tasks a job array may split a scan into.
MAX_SHARDS = 1_000_000


@dataclass(frozen=True)
class Shard:
    """Task ``index`` of ``count`` (0-based); ``source`` says where it came from (a flag or a variable)."""

    index: int
    count: int
    source: str = "--shard"

    def __post_init__(self) -> None:
        for name in ("index", "count"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int):
                raise ConfigError(f"shard {name} must be an integer, got {value!r}")
        if not 1 <= self.count <= MAX_SHARDS or not 0 <= self.index < self.count:
            raise ConfigError(
                f"shard must be I/N with 0 <= I < N <= {MAX_SHARDS:,}, got {self.index}/{self.count}"
            )

    def select(self, models: Iterable[str | Path]) -> list[Path]:
        """This shard's models: every ``count``-th of the sorted, de-duplicated list, from ``index``."""
        ordered = sorted({str(Path(m)) for m in models})
        return [Path(m) for m in ordered[self.index :: self.count]]

    def results_path(self, out: str | Path) -> Path:
        """The shard's results file: ``{shard}`` in ``out`` replaced by ``I-of-N``, or ``.shard-I-of-N``
        inserted before the suffix (``results.jsonl`` → ``results.shard-3-of-10.jsonl``)."""
        tag = f"{self.index}-of-{self.count}"
        out = Path(out)
        if "{shard}" in out.name:
            return out.with_name(out.name.replace("{shard}", tag))
        return out.with_name(f"{out.stem}.shard-{tag}{out.suffix}")


def parse_shard(text: str) -> Shard:
    """``"I/N"`` as a :class:`Shard` (``ConfigError`` otherwise)."""
    parts = text.split("/")
    if len(parts) != 2 or not all(p.strip().isdigit() for p in parts):
        raise ConfigError(f"--shard must be I/N (e.g. 0/10), got {text!r}")
    return Shard(int(parts[0]), int(parts[1]))


def shard_from_env(env: Mapping[str, str] | None = None) -> Shard | None:
    """The shard a job array's task environment names, or None outside one.

    Slurm: ``SLURM_ARRAY_TASK_ID`` − ``SLURM_ARRAY_TASK_MIN`` of ``SLURM_ARRAY_TASK_COUNT`` (arrays such
    as ``--array=1-10`` count from their minimum). Kubernetes indexed Jobs: ``JOB_COMPLETION_INDEX`` of
    ``EXRAY_SHARD_COUNT`` (Kubernetes sets no count: pass the Job's completions in that variable).
    """
    env = os.environ if env is None else env
    try:
        if "SLURM_ARRAY_TASK_ID" in env and "SLURM_ARRAY_TASK_COUNT" in env:
            first = int(env.get("SLURM_ARRAY_TASK_MIN", "0"))
            task, count = int(env["SLURM_ARRAY_TASK_ID"]), int(env["SLURM_ARRAY_TASK_COUNT"])
            return Shard(task - first, count, "SLURM_ARRAY_TASK_ID")
        if "JOB_COMPLETION_INDEX" in env:
            if "EXRAY_SHARD_COUNT" not in env:
                raise ConfigError(
                    "JOB_COMPLETION_INDEX is set but EXRAY_SHARD_COUNT is not: set it to the completions"
                )
            return Shard(
                int(env["JOB_COMPLETION_INDEX"]), int(env["EXRAY_SHARD_COUNT"]), "JOB_COMPLETION_INDEX"
            )
    except ValueError as err:
        raise ConfigError(f"job-array variables must be integers: {err}") from None
    return None


def merge_results(files: Sequence[str | Path], out: str | Path) -> dict[str, dict[str, Any]]:
    """Join shard results files into ``out`` (one line per model, sorted by model).

    A model in several files keeps a successful record over a failed one, else the record of the last file
    given. ``out`` may be one of ``files`` (it is read first and replaced atomically).
    """
    if not files:
        raise ConfigError("give at least one results file to merge")
    out = Path(out)
    check_writable(out, "merged results file")
    merged: dict[str, dict[str, Any]] = {}
    for path in files:
        if not Path(path).is_file():
            raise ConfigError(f"results file {path} does not exist")
        for model, record in read_results(path).items():
            kept = merged.get(model)
            if kept is None or not (kept.get("error") is None and record.get("error") is not None):
                merged[model] = record
    tmp = out.with_name(out.name + ".tmp")
    with open(tmp, "w", encoding="utf-8") as fh:
        for model in sorted(merged):
            fh.write(json.dumps(merged[model]) + "\n")
    tmp.replace(out)
    return merged
