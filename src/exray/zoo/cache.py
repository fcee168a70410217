"""Zoos built once and shared: a cache keyed by the spec's content and the exray version.

:func:`cached_build` is what test suites (and ``exray demo``) use: the first caller builds the zoo under a
file lock, so two processes (e.g. two pytest-xdist workers) never build the same zoo at once; every later
caller gets the finished directory back at once. An interrupted build resumes where it stopped.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from filelock import FileLock

from exray.errors import ExrayError
from exray.models.runtime import native_bf16, resolve_device
from exray.version import __version__
from exray.zoo.build import build_zoo
from exray.zoo.records import ZOO_FILE
from exray.zoo.spec import ZooSpec, load_spec


def cache_root(root: str | Path | None = None) -> Path:
    """``root``, else ``$EXRAY_CACHE``, else ``~/.cache/exray``."""
    if root is not None:
        return Path(root)
    env = os.environ.get("EXRAY_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "exray"


def uses_auto_bf16(spec: ZooSpec) -> bool:
    """Whether some model of ``spec`` trains under ``bf16: auto`` (the training section or an
    architecture's override), whose precision depends on the machine."""
    settings = [spec.training.bf16, *(a.training.get("bf16") for a in spec.architectures)]
    return "auto" in settings


def cache_dir(
    spec: ZooSpec, root: str | Path | None = None, *, train_threads: int = 1, device: str = "cpu"
) -> Path:
    """Where :func:`cached_build` puts ``spec``: ``<root>/zoos/<name>-<hash of spec and exray version>``,
    with ``-t<N>`` appended for a build whose models train on N > 1 threads, ``-cuda`` for one that
    trains on a GPU, and ``-bf16`` or ``-fp32`` for a spec with ``bf16: auto``, by what it runs on this
    device (other weights: a cache shared by machines keeps them apart)."""
    key = hashlib.sha256(f"{spec.digest()}:{__version__}".encode()).hexdigest()[:16]
    suffix = f"-t{train_threads}" if train_threads != 1 else ""
    resolved = resolve_device(device)
    suffix += "" if resolved.type == "cpu" else f"-{resolved.type}"
    if uses_auto_bf16(spec):
        suffix += "-bf16" if native_bf16(resolved) else "-fp32"
    return cache_root(root) / "zoos" / f"{spec.name}-{key}{suffix}"


def _finished(out: Path, spec: ZooSpec) -> dict | None:
    try:
        state = json.loads((out / ZOO_FILE).read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None
    if state.get("complete") and state.get("spec_digest") == spec.digest():
        return state
    return None


def cached_build(
    spec_path: str | Path | ZooSpec,
    cache_root: str | Path | None = None,
    *,
    workers: int = 1,
    progress: bool = False,
    train_threads: int = 1,
    device: str = "cpu",
    allow_failed: bool = False,
) -> Path:
    """The directory of the zoo ``spec_path`` built in the cache (see :func:`cache_dir`), building or
    resuming it under a file lock when needed.

    Raises :class:`~exray.errors.ExrayError` when the zoo is not fully good (a model errored or misses
    the quality bar): a cached zoo is a fixture others rely on. ``allow_failed``: a population measured as
    it came out (the studies) is returned with its models below the quality bar, which ``METADATA.csv``
    marks (``status`` ``failed_quality``); errored models still raise. Errored models are retried on the next
    call; quality failures are deterministic and reported again without retraining. ``train_threads``
    and ``device`` are :func:`~exray.zoo.build_zoo`'s (a build on another thread count or device is
    another zoo, cached apart).
    """
    spec = spec_path if isinstance(spec_path, ZooSpec) else load_spec(spec_path)
    out = cache_dir(spec, cache_root, train_threads=train_threads, device=device)
    state = _finished(out, spec)
    if state is None:
        out.parent.mkdir(parents=True, exist_ok=True)
        with FileLock(str(out) + ".lock"):
            state = _finished(out, spec)
            if state is None:
                build_zoo(
                    spec, out, workers=workers, progress=progress, train_threads=train_threads, device=device
                )
                state = _finished(out, spec)
    summary = (state or {}).get("summary") or {}
    problems = summary.get("errors") or {}
    if state is not None and allow_failed and not problems:
        return out
    if state is None or not state.get("ok"):
        failed = summary.get("failed_quality") or []
        raise ExrayError(
            f"the cached zoo {spec.name!r} in {out} is not usable: "
            f"{len(failed)} model(s) below the quality bar {failed}, errors {problems}"
        )
    return out
