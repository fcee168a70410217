"""``exray zoo build``: a whole population, in parallel processes, cached and resumable (design §3–4).

Output directory::

    DIR/id-00000000/ …     one model directory per model (see :mod:`exray.zoo.model`)
    DIR/METADATA.csv        one row per model (design §4), rewritten after every model
    DIR/zoo.json            the canonical spec, the exray version and the last build's summary

Resuming: a model directory exists only once complete (it is assembled under a hidden ``.partial`` name),
so a killed build simply continues with the models that are missing. A finished model is never retrained
when its ``config.json`` records the same recipe hash (:func:`exray.zoo.draw.recipe_hash`); when the spec
changed in a way that changes a finished model, the build refuses and names the models and the changed
settings, unless ``rebuild=True`` (CLI ``--rebuild``), which retrains exactly those models.
"""

from __future__ import annotations

import shutil
import time
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch
from filelock import FileLock, Timeout
from tqdm.auto import tqdm

from exray.errors import ConfigError, ModelLoadError
from exray.models.io import WEIGHTS_FILE, read_config
from exray.models.runtime import auto_precision_differs, resolve_device
from exray.utils import available_cores, intra_op_threads, run_pooled
from exray.zoo.draw import ModelDesign, designs, recipe, recipe_hash
from exray.zoo.model import build_model_dir
from exray.zoo.records import (
    STATUS_ERROR,
    BuildSummary,
    ModelRecord,
    write_state,
)
from exray.zoo.spec import ZooSpec, load_spec

LOCK_FILE = ".build.lock"


def _flatten(data: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(data, dict):
        flat: dict[str, Any] = {}
        for key, value in data.items():
            flat.update(_flatten(value, f"{prefix}.{key}" if prefix else str(key)))
        return flat
    return {prefix: data}


def _differences(old: Any, new: Any) -> list[str]:
    a, b = _flatten(old), _flatten(new)
    return [
        f"{k}: {a.get(k, '<absent>')!r} -> {b.get(k, '<absent>')!r}"
        for k in sorted(set(a) | set(b))
        if a.get(k) != b.get(k)
    ]


def _finished_config(directory: Path) -> dict[str, Any] | None:
    """The config of a finished model directory, or None when it has no weights or an unreadable config."""
    if not (directory / WEIGHTS_FILE).exists():
        return None
    try:
        return read_config(directory)
    except ModelLoadError:
        return None


def inspect_zoo(
    spec: ZooSpec, out: Path, train_threads: int = 1, device: str = "cpu"
) -> tuple[dict[str, dict[str, Any]], dict[str, list[str]], list[Path]]:
    """Finished models matching the spec (name → config), finished models whose recipe changed (name →
    the changed settings), and stale model directories of this builder that the spec no longer has.
    A model trained on another thread count than ``train_threads``, on another device type than
    ``device``'s, or under ``bf16: auto`` in another precision than auto runs on ``device``, counts as
    changed (other weights)."""
    resolved = resolve_device(device)
    finished: dict[str, dict[str, Any]] = {}
    changed: dict[str, list[str]] = {}
    wanted = designs(spec)
    for design in wanted:
        config = _finished_config(out / design.name)
        if config is None:
            continue
        zoo, training = config.get("zoo", {}), config.get("training", {})
        threads = training.get("threads", 1)
        trained_on = torch.device(training.get("device", "cpu")).type
        runtime = []  # what trains other weights than this build would, the recipe being equal
        if threads != train_threads or trained_on != resolved.type:
            runtime.append(
                f"trained on {threads} thread(s) on {trained_on}, this build trains on {train_threads} "
                f"on {resolved.type}"
            )
        precision = auto_precision_differs(training, resolved)
        if precision:
            runtime.append(precision)
        if zoo.get("recipe_hash") == recipe_hash(spec, design):
            if runtime:
                changed[design.name] = runtime
            else:
                finished[design.name] = config
        else:
            changed[design.name] = _differences(zoo.get("recipe", {}), recipe(spec, design)) or [
                "recipe hash differs"
            ]
    names = {d.name for d in wanted}
    stale = [
        p
        for p in sorted(out.glob("id-*"))
        if p.is_dir() and p.name not in names and "zoo" in (_finished_config(p) or {})
    ]
    return finished, changed, stale


def default_workers() -> int:
    """One worker per core available to this process (each model trains on one thread)."""
    return available_cores()


JobResult = tuple[dict[str, Any] | None, str, str, float]


def _job(
    spec: ZooSpec, design: ModelDesign, out: Path, progress: bool, threads: int, device: str = "cpu"
) -> JobResult:
    """Build one model; never raises: returns (config, error message, traceback, seconds).

    The model is built with ``threads`` intra-op threads (1 by default), whoever builds it: a CPU's
    multi-threaded reductions (convolution gradients) sum in an order that depends on the thread count, so
    a fixed count is what makes a zoo bit-identical on one machine whether it is built in-process, by
    parallel workers or by the test suite. Parallelism comes from ``workers``; another thread count (or
    another CPU, or a GPU: ``device``) trains other weights.
    """
    start = time.perf_counter()
    try:
        with intra_op_threads(threads):
            config = build_model_dir(spec, design, out, progress=progress, device=device)
        return config, "", "", time.perf_counter() - start
    except Exception as err:  # a failing model is recorded and the build goes on (issue 3)
        return None, f"{type(err).__name__}: {err}", traceback.format_exc(), time.perf_counter() - start


def _run(
    spec: ZooSpec,
    todo: list[ModelDesign],
    out: Path,
    workers: int,
    progress: bool,
    threads: int,
    device: str,
) -> Iterator[tuple[ModelDesign, dict[str, Any] | None, str, str, float]]:
    """Build ``todo`` in this process (workers == 1) or in a pool of spawned processes; yield results as
    they finish."""
    tasks = [(spec, d, out, progress and workers == 1, threads, device) for d in todo]
    for index, result, died in run_pooled(_job, tasks, workers, threads):
        yield todo[index], *(result if died is None else (None, died, "", 0.0))


def build_zoo(
    spec: ZooSpec | str | Path,
    out: str | Path,
    *,
    workers: int = 1,
    progress: bool = True,
    rebuild: bool = False,
    on_model: Callable[[ModelRecord], None] | None = None,
    train_threads: int = 1,
    device: str = "cpu",
) -> BuildSummary:
    """Build (or resume) the zoo ``spec`` into ``out``; see the module docstring.

    ``workers`` > 1 trains that many models at once in spawned processes, ``workers == 1`` in this
    process; every model trains with ``train_threads`` intra-op threads (see :func:`_job`), so the weights
    do not depend on ``workers``; they do depend on ``train_threads`` and on the CPU. ``device``: where the
    models train (default the CPU, which makes a zoo reproducible on one machine; ``"cuda"`` or
    ``"auto"`` for a GPU, :func:`~exray.models.runtime.resolve_device`; recorded per model).
    :func:`default_workers` uses every core. ``on_model`` is called with each model's record as it
    finishes. Raises ConfigError when finished models no longer match the spec and
    ``rebuild`` is false, or when another build is running into ``out`` (a lock file guards the
    directory).
    """
    if not isinstance(spec, ZooSpec):
        spec = load_spec(spec)
    if not isinstance(workers, int) or workers < 1:
        raise ConfigError(f"workers must be an int >= 1, got {workers!r}")
    if not isinstance(train_threads, int) or isinstance(train_threads, bool) or train_threads < 1:
        raise ConfigError(f"train_threads must be an int >= 1, got {train_threads!r}")
    device = str(resolve_device(device))
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(out / LOCK_FILE), timeout=0)
    try:
        lock.acquire()
    except Timeout:
        raise ConfigError(f"another exray zoo build is running into {out}; wait for it or stop it") from None
    try:
        return _build(spec, out, workers, progress, rebuild, on_model, train_threads, device)
    finally:
        lock.release()


def _build(
    spec: ZooSpec,
    out: Path,
    workers: int,
    progress: bool,
    rebuild: bool,
    on_model: Callable[[ModelRecord], None] | None,
    threads: int,
    device: str,
) -> BuildSummary:
    start = time.perf_counter()
    finished, changed, stale = inspect_zoo(spec, out, threads, device)
    if (changed or stale) and not rebuild:
        lines = [
            f"  {name}: " + "; ".join(diffs[:4]) + (" …" if len(diffs) > 4 else "")
            for name, diffs in changed.items()
        ]
        lines += [f"  {p.name}: not in the spec any more" for p in stale]
        count = len(changed) + len(stale)
        raise ConfigError(
            f"the spec {spec.name!r} no longer matches {count} finished model(s) in {out}:\n"
            + "\n".join(lines)
            + "\nbuild into another directory, or pass --rebuild (rebuild=True) to retrain just these models"
        )
    for path in stale:
        shutil.rmtree(path)
    for partial in out.glob(".id-*.partial"):
        shutil.rmtree(partial)

    all_designs = designs(spec)
    records: dict[str, ModelRecord] = {
        name: ModelRecord.from_config(name, config) for name, config in finished.items()
    }
    todo = [d for d in all_designs if d.name not in finished]
    tracebacks: dict[str, str] = {}
    bar = tqdm(
        total=len(all_designs),
        initial=len(finished),
        desc=f"zoo {spec.name}",
        unit="model",
        disable=not progress,
    )
    write_state(spec, out, all_designs, records, tracebacks, complete=False)
    with bar:
        for design, config, error, trace, seconds in _run(
            spec, todo, out, workers, progress and workers == 1, threads, device
        ):
            if config is None:
                record = ModelRecord.failure(design, error, seconds)
                tracebacks[design.name] = trace
            else:
                record = ModelRecord.from_config(design.name, config)
            records[design.name] = record
            write_state(spec, out, all_designs, records, tracebacks, complete=False)
            bar.update(1)
            bar.set_postfix_str(f"{design.name} {record.status}")
            if on_model is not None:
                on_model(record)
    summary = BuildSummary(
        out=out,
        spec_name=spec.name,
        records=tuple(records[d.name] for d in all_designs),
        built=tuple(d.name for d in todo if d.name not in changed and records[d.name].status != STATUS_ERROR),
        reused=tuple(sorted(finished)),
        rebuilt=tuple(sorted(n for n in changed if records[n].status != STATUS_ERROR)),
        seconds=time.perf_counter() - start,
        tracebacks=tracebacks,
    )
    write_state(spec, out, all_designs, records, tracebacks, complete=summary.complete, summary=summary)
    return summary
