"""Scanning many model directories: one JSON line per model, parallel, resumable, failure-isolated.

Design §4 "Results": every line has the stable keys ``model`` (the directory as given) and
``probability`` (null for a model that failed, with its ``error``). A results file that already holds a
model is not scanned again, so an interrupted batch resumes where it stopped. The failure of one model
(corrupt weights, wrong input size, too few examples, a pickled model without opt-in, or a bug) is
recorded and the batch goes on.
"""

from __future__ import annotations

import json
import queue
import time
import traceback
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from functools import partial
from multiprocessing import get_context
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from exray.errors import ConfigError, ExrayError
from exray.files import check_writable, read_results
from exray.pipeline.budget import BudgetExceeded, ModelBudget, enforced
from exray.pipeline.loading import load_scan_inputs
from exray.pipeline.options import ScanOptions
from exray.pipeline.ray_backend import RayBackend, import_ray, run_on_ray
from exray.pipeline.scan import scan
from exray.utils import (
    available_cores,
    cap_workers,
    check_workers_run,
    kill_workers,
    set_thread_budget,
    submit_or_requeue,
    versions,
)


def scan_model_dir(path: str | Path, options: ScanOptions, *, progress: bool = False) -> dict[str, Any]:
    """Scan one model directory; never raises for a problem with that model — it is in ``"error"``."""
    start = time.perf_counter()
    try:
        model, examples = load_scan_inputs(path, trust_pickle=options.trust_pickle, device=options.device)
        result = scan(model, examples, options.scan_settings(), name=str(path), progress=progress)
        if options.report_dir is not None:
            from exray.report import write_model_report

            write_model_report(result, examples, options.report_dir)
        record = result.to_dict()
    except Exception as err:  # isolate every failure of this model, expected or not
        message = f"{type(err).__name__}: {err}"
        if not isinstance(err, ExrayError):
            message += " | " + traceback.format_exc(limit=3).replace("\n", " ")
        record = error_record(path, options, message)
    record.setdefault("timings", {})["total"] = time.perf_counter() - start
    return record


def error_record(path: str | Path, options: ScanOptions, message: str) -> dict[str, Any]:
    """The results line of a model whose scan failed: no probability, the reason in ``error``."""
    return {
        "model": str(path),
        "probability": None,
        "score": None,
        "triggers": [],
        "scanner": options.scanner,
        "refine": options.refine,
        "seed": options.seed,
        "error": message,
        "versions": versions(),
    }


def scan_many(
    paths: Sequence[str | Path],
    options: ScanOptions,
    *,
    out: str | Path | None = None,
    workers: int = 1,
    progress: bool = True,
    budget: ModelBudget | None = None,
    backend: RayBackend | None = None,
) -> Iterator[dict[str, Any]]:
    """Scan every directory in ``paths``, yielding (and appending to ``out``) one record per model.

    Models already in ``out`` are skipped. ``workers`` processes run in parallel, each with an equal share
    of the machine's cores as its thread budget. With a ``budget`` (:class:`ModelBudget`: seconds, memory)
    every model is scanned in a worker process, and a model over its budget is recorded as an error.
    ``backend``: a :class:`~exray.pipeline.ray_backend.RayBackend` runs one Ray task per model instead of
    the local pool (``workers`` is then not used: Ray runs as many tasks as the cluster's CPUs fit); this
    process still writes ``out``.
    """
    budget = ModelBudget() if budget is None else budget
    if not isinstance(budget, ModelBudget):
        raise ConfigError(f"budget must be a ModelBudget, got {type(budget).__name__}")
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ConfigError(f"workers must be an integer >= 1, got {workers!r}")
    if backend is not None and not isinstance(backend, RayBackend):
        raise ConfigError(f"backend must be None or a RayBackend, got {type(backend).__name__}")
    if backend is not None:
        import_ray()  # a missing Ray stops the batch before any model
    workers = cap_workers(workers)
    if out is not None:
        out = check_writable(out, "results file")
        out.parent.mkdir(parents=True, exist_ok=True)
    done = read_results(out) if out is not None else {}
    todo = [str(p) for p in paths if str(p) not in done]
    if out is not None:
        _drop_torn_line(Path(out))
    sink = open(out, "a") if out is not None else None  # noqa: SIM115  (kept open while records arrive)
    bar = tqdm(total=len(todo), desc="models", unit="model", disable=not progress)
    try:
        records = (
            _run(todo, options, workers, budget=budget)
            if backend is None
            else run_on_ray(todo, options, backend, budget, task=scan_model_dir, failure=error_record)
        )
        for record in records:
            if sink is not None:
                sink.write(json.dumps(record) + "\n")
                sink.flush()
            bar.update()
            yield record
    finally:
        bar.close()
        if sink is not None:
            sink.close()


def _drop_torn_line(path: Path) -> None:
    """Make the file end on a newline before records are appended: a complete last record without its
    newline gets one; a partial last line (a crash while writing it) is cut."""
    if path.exists() and path.stat().st_size:
        data = path.read_bytes()
        if data.endswith(b"\n"):
            return
        start = data.rfind(b"\n") + 1
        try:
            complete = isinstance(json.loads(data[start:].decode("utf-8")), dict)
        except (UnicodeDecodeError, json.JSONDecodeError):
            complete = False
        path.write_bytes(data + b"\n" if complete else data[:start])


#: The record of a model whose worker process died under it (twice: once beside others, once alone).
WORKER_DIED = (
    "the worker process scanning this model died (killed, out of memory or crashed): "
    "BrokenProcessPool; the other models were scanned"
)


def _run(
    paths: list[str],
    options: ScanOptions,
    workers: int,
    task: Callable[[str, ScanOptions], dict[str, Any]] = scan_model_dir,
    budget: ModelBudget = ModelBudget(),  # noqa: B008  (frozen)
) -> Iterator[dict[str, Any]]:
    """Records of ``task`` over ``paths``, ``workers`` processes at a time, in completion order.

    With ``workers`` ≥ 2 or an active ``budget`` every model is scanned in a worker process. A dead worker
    (``kill -9``, the OOM killer, a crash in native code) breaks the whole process pool and every model in
    flight with it. The pool is replaced and those models are scanned again, one at a time: a model that
    kills its worker even alone gets an error record — once a fresh worker has been seen to run an empty
    task, so that a machine on which no worker can run stops the batch (:class:`ExrayError`) instead of
    blaming every model. A worker still busy :data:`~exray.pipeline.budget.HARD_KILL_GRACE` seconds past
    its model's time budget is killed: that model is recorded as over its budget, the others in flight are
    scanned again. The budget counts from the moment the worker starts the model, which the worker reports
    (a fresh worker's start-up — spawn, importing torch — is not the model's; on a loaded machine it can
    take longer than the grace), or from :data:`STARTUP_ALLOWANCE` seconds after submission if it never
    reports."""
    if workers == 1 and not budget.active:
        for path in paths:
            yield task(path, options)
        return
    threads = max(1, available_cores() // workers)
    job = partial(_budgeted, task, budget) if budget.active else task
    context = get_context("spawn")
    pending: deque[str] = deque(paths)
    suspects: deque[str] = deque()  # in flight when a pool broke: retried alone
    while pending or suspects:
        lost: list[str] = []
        alone: str | None = None  # the suspect running by itself, if any
        # (path, monotonic time) as each worker starts a model; one queue per pool, so that a report of a
        # killed worker never reaches the next pool, nor a lock it died holding
        starts = context.Queue() if budget.active else None
        with ProcessPoolExecutor(
            workers,
            mp_context=context,
            initializer=_init_worker,
            initargs=(threads, starts),
            max_tasks_per_child=1 if budget.active else None,  # an interrupted scan leaves no state behind
        ) as pool:
            inflight: dict[Future, str] = {}
            clock = _Clock()
            broken = False
            while (pending or suspects or inflight) and not broken:
                if suspects and not inflight:
                    alone = suspects.popleft()
                    broken = not submit_or_requeue(pool, inflight, alone, suspects, job, alone, options)
                    alone = None if broken else alone
                while not broken and alone is None and not suspects and pending and len(inflight) < workers:
                    path = pending.popleft()
                    broken = not submit_or_requeue(pool, inflight, path, pending, job, path, options)
                if not inflight:
                    break
                clock.update(inflight, starts)
                timeout = clock.time_left(inflight, budget)
                done, _ = wait(inflight, timeout=timeout, return_when=FIRST_COMPLETED)
                clock.update(inflight, starts)
                late = [] if done else clock.overdue(inflight, budget)
                if late:  # stuck past the hard deadline (in native code): kill, the others run again
                    for path in late:
                        yield error_record(path, options, budget.time_message() + " — its worker was killed")
                        alone = None if path == alone else alone
                    pending.extendleft(reversed(list(inflight.values())))
                    inflight.clear()
                    kill_workers(pool)
                    broken = True
                for future in done:
                    path = inflight.pop(future)
                    clock.forget(future)
                    try:
                        record = future.result()
                    except BrokenProcessPool:
                        lost.append(path)
                        broken = True
                        continue
                    if path == alone:
                        alone = None
                    yield record
            lost += inflight.values()  # the pool is broken: nothing else in flight will finish
        for path in lost:
            if path != alone:
                suspects.append(path)
                continue
            check_workers_run(context, threads)
            yield error_record(path, options, WORKER_DIED)


#: Seconds after submission from which a model's time budget counts even if its worker never reported that
#: it started the model (a worker hanging in its start-up is then killed like a stuck scan).
STARTUP_ALLOWANCE = 300.0

_starts: Any = None  # in a worker process: the queue on which it reports when it starts a model


def _init_worker(threads: int, starts: Any) -> None:
    global _starts
    set_thread_budget(threads)
    if starts is not None:
        starts.cancel_join_thread()  # a worker's exit never waits on the queue's feeder thread
    _starts = starts


def _budgeted(
    task: Callable[[str, ScanOptions], dict[str, Any]], budget: ModelBudget, path: str, options: ScanOptions
) -> dict[str, Any]:
    """``task`` in a worker under ``budget``: over time or memory, the model's record says so."""
    if _starts is not None:
        _starts.put((path, time.monotonic()))  # the parent's hard deadline counts from here
    try:
        with enforced(budget):
            record = task(path, options)
    except BudgetExceeded as err:
        return error_record(path, options, str(err))
    if budget.out_of_memory(record.get("error")):
        record["error"] = budget.memory_message(record["error"])
    return record


class _Clock:
    """When each model in flight was submitted and when its worker started it (``time.monotonic``, which is
    one clock for every process of a machine), and the hard deadlines that follow."""

    def __init__(self) -> None:
        self.submitted: dict[Future, float] = {}
        self.started: dict[Future, float] = {}

    def update(self, inflight: dict[Future, str], starts: Any) -> None:
        """Note new submissions, then drain the workers' start reports."""
        now = time.monotonic()
        for future in inflight:
            self.submitted.setdefault(future, now)
        while starts is not None:
            try:
                path, when = starts.get_nowait()
            except (queue.Empty, OSError, ValueError):
                break
            for future, name in inflight.items():  # a report older than the submission is a stale retry's
                if name == path and future not in self.started and when >= self.submitted[future] - 1.0:
                    self.started[future] = when

    def forget(self, future: Future) -> None:
        self.submitted.pop(future, None)
        self.started.pop(future, None)

    def start(self, future: Future) -> float:
        """When ``future``'s budget started: its worker's report, else submission + STARTUP_ALLOWANCE."""
        return self.started.get(future, self.submitted[future] + STARTUP_ALLOWANCE)

    def time_left(self, inflight: dict[Future, str], budget: ModelBudget) -> float | None:
        """Seconds to wait for a result: until the first model still in flight reaches its hard deadline,
        at most 1 s while a worker has not reported its start (None: no time budget)."""
        if budget.hard_deadline is None or not inflight:
            return None
        left = max(0.0, min(self.start(f) for f in inflight) + budget.hard_deadline - time.monotonic())
        return min(left, 1.0) if any(f not in self.started for f in inflight) else left

    def overdue(self, inflight: dict[Future, str], budget: ModelBudget) -> list[str]:
        """The models in flight past their hard deadline (they are removed from ``inflight``)."""
        if budget.hard_deadline is None:
            return []
        now = time.monotonic()
        late = [f for f in inflight if now >= self.start(f) + budget.hard_deadline]
        for future in late:
            self.forget(future)
        return [inflight.pop(f) for f in late]
