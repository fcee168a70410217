"""Running part of an SDRM study: the runs matching shell-style patterns (``exray sdrm study --runs``)."""

from __future__ import annotations

import fnmatch
from collections.abc import Sequence
from dataclasses import replace

from exray.errors import ConfigError
from exray.studies.sdrm.spec import StudySpec


def select_runs(spec: StudySpec, patterns: Sequence[str]) -> StudySpec:
    """``spec`` with only the runs whose ``data/architecture/attack`` matches one of the shell-style
    ``patterns`` (e.g. ``signs/vgg/*``), in the spec's order. Every model's cache key depends on its own run
    only, so a selection reuses what the full study trained, and the full study what a selection trained."""
    if not patterns:
        return spec
    chosen = tuple(
        run
        for run in spec.runs
        if any(fnmatch.fnmatchcase(f"{run.data}/{run.architecture}/{run.attack}", p) for p in patterns)
    )
    unmatched = [
        p
        for p in patterns
        if not any(fnmatch.fnmatchcase(f"{r.data}/{r.architecture}/{r.attack}", p) for r in spec.runs)
    ]
    if unmatched:
        known = ", ".join(f"{r.data}/{r.architecture}/{r.attack}" for r in spec.runs)
        raise ConfigError(f"sdrm spec: no run matches {unmatched}; the runs are {known}")
    return replace(spec, runs=chosen)
