"""``exray scan --backend ray`` (issue 18 §5): one Ray task per model, on a local Ray instance or a cluster.

Each task scans one model directory (:func:`~exray.pipeline.batch.scan_model_dir`, which never raises for a
problem with its model) and declares its resources: ``cpus`` cores (its torch thread budget) and one GPU when
the scan runs on CUDA. A task whose worker dies (killed, out of memory, a crash in native code) is retried
``retries`` times by Ray, then recorded as that model's error; the batch goes on. The driver — the process
that called :func:`~exray.pipeline.scan_many` — is the only writer of the JSON-lines results file, so a
cluster scan resumes exactly as a local one. With a per-model budget every task runs in a fresh worker
(``max_calls=1``) under :func:`~exray.pipeline.budget.enforced` (the time budget is raised inside the
task; the local pool's hard kill of a stuck worker has no Ray counterpart).

Ray is an optional dependency: ``pip install 'exray[ray]'``.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from exray.errors import ConfigError
from exray.models.runtime import resolve_device
from exray.pipeline.budget import BudgetExceeded, ModelBudget, enforced
from exray.pipeline.options import ScanOptions
from exray.utils import available_cores


@dataclass(frozen=True)
class RayBackend:
    """Where and how the Ray tasks run. ``address``: a running cluster (``"auto"``, ``"ray://host:10001"``);
    ``None`` = ``$RAY_ADDRESS`` if set, else a local instance started for the batch and stopped after it.
    ``cpus``: cores each model's task declares (its thread budget). ``retries``: re-runs of a task whose
    worker died."""

    address: str | None = None
    cpus: int = 1
    retries: int = 2

    def __post_init__(self) -> None:
        if isinstance(self.cpus, bool) or not isinstance(self.cpus, int) or not 1 <= self.cpus <= 1024:
            raise ConfigError(f"cpus per model must be an integer in [1, 1024], got {self.cpus!r}")
        if (
            isinstance(self.retries, bool)
            or not isinstance(self.retries, int)
            or not 0 <= self.retries <= 100
        ):
            raise ConfigError(f"retries must be an integer in [0, 100], got {self.retries!r}")
        if self.address is not None and (not isinstance(self.address, str) or not self.address):
            raise ConfigError(f"address must be None or a Ray address, got {self.address!r:.60}")


def import_ray() -> Any:
    """The ``ray`` module, or a ConfigError saying how to install it."""
    try:
        import ray
    except ImportError:
        raise ConfigError("--backend ray needs Ray: pip install 'exray[ray]' (or pip install ray)") from None
    return ray


#: One model's scan (``scan_model_dir``) and the record of a failed one (``error_record``); passed in by
#: :mod:`exray.pipeline.batch` as module-level functions, which Ray ships to its workers by reference.
Task = Callable[[str, ScanOptions], dict[str, Any]]
Failure = Callable[[str, ScanOptions, str], dict[str, Any]]


def _scan_task(
    task: Task, failure: Failure, path: str, options: ScanOptions, budget: ModelBudget, threads: int
) -> dict[str, Any]:
    """One model's scan inside a Ray worker."""
    from exray.utils import set_thread_budget

    set_thread_budget(threads)
    if not budget.active:
        return task(path, options)
    try:
        with enforced(budget):
            record = task(path, options)
    except BudgetExceeded as err:
        return failure(path, options, str(err))
    if budget.out_of_memory(record.get("error")):
        record["error"] = budget.memory_message(record["error"])
    return record


def run_on_ray(
    paths: list[str],
    options: ScanOptions,
    backend: RayBackend,
    budget: ModelBudget,
    *,
    task: Task,
    failure: Failure,
) -> Iterator[dict[str, Any]]:
    """Records of ``task`` over ``paths``, one Ray task each, in completion order."""
    ray = import_ray()
    started_here = not ray.is_initialized()
    if started_here:
        address = backend.address or os.environ.get("RAY_ADDRESS") or None
        local = {} if address else {"num_cpus": available_cores()}
        ray.init(
            address=address,
            include_dashboard=False,
            log_to_driver=False,
            configure_logging=False,
            **local,
        )
    try:
        gpus = 1 if resolve_device(options.device).type == "cuda" else 0
        remote = ray.remote(
            num_cpus=backend.cpus,
            num_gpus=gpus,
            max_retries=backend.retries,
            # a budget's limits must not outlive its worker; nor a GPU task's CUDA memory (Ray's default)
            max_calls=1 if budget.active or gpus else 0,
        )(_scan_task)
        # workers on other machines resolve paths against their own working directory: send absolute ones
        pending = {
            remote.remote(task, failure, str(Path(path).resolve()), options, budget, backend.cpus): path
            for path in paths
        }
        while pending:
            done, _ = ray.wait(list(pending), num_returns=1)
            for ref in done:
                path = pending.pop(ref)
                try:
                    record = ray.get(ref)
                except Exception as err:  # the worker died even after the retries: this model only
                    reason = " ".join(str(err).split())[:300]
                    record = failure(
                        path,
                        options,
                        f"the Ray task scanning this model failed after {backend.retries} retries: "
                        f"{type(err).__name__}: {reason}",
                    )
                yield {**record, "model": path}  # the key the results file resumes by: the path as given
    finally:
        if started_here:
            ray.shutdown()
