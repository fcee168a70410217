"""Small shared helpers: seeding, thread budgets, version records."""

from __future__ import annotations

import multiprocessing
import os
import platform
import warnings
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from contextlib import contextmanager
from typing import Any

import numpy as np
import torch


def check_seed(seed: object, name: str = "seed") -> int:
    """``seed`` if it is an integer in [0, 2⁶³ − 1], else a :class:`~exray.errors.ConfigError`."""
    from exray.errors import ConfigError

    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**63:
        raise ConfigError(f"{name} must be an integer in [0, 2**63), got {seed!r:.40}")
    return seed


def derive_seed(seed: int, *keys: int | str) -> int:
    """A 63-bit seed derived from ``seed`` and a tuple of keys, stable across runs and platforms.

    Used to give every independent random stream (a mask problem, a model of a zoo, …) its own seed
    that depends only on *what* it is, never on the order in which streams are created.
    """
    words: list[int] = [int(seed) & 0xFFFFFFFF]
    for key in keys:
        if isinstance(key, str):
            words.extend(key.encode("utf-8"))
        else:
            words.append(int(key) & 0xFFFFFFFF)
    state = np.random.SeedSequence(words).generate_state(2, dtype=np.uint32)
    return int((int(state[0]) << 31) ^ int(state[1])) & ((1 << 63) - 1)


def torch_generator(seed: int, device: str | torch.device = "cpu") -> torch.Generator:
    """A ``torch.Generator`` seeded with ``seed``."""
    gen = torch.Generator(device=device)
    gen.manual_seed(int(seed))
    return gen


def available_cores() -> int:
    """The CPU cores this process may run on (its affinity mask where the OS has one: a container's share,
    not the host's count)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def cap_workers(workers: int, stacklevel: int = 3) -> int:
    """``workers``, or the available cores with a warning when it asks for more (more processes than cores
    only contend for them); ``stacklevel`` points the warning at the user's call (3: the caller's caller)."""
    cores = available_cores()
    if workers > cores:
        warnings.warn(f"{workers} workers on {cores} cores: using {cores}", stacklevel=stacklevel)
        return cores
    return workers


def set_thread_budget(threads: int | None) -> None:
    """Limit this process's intra-op threads (parallel workers split the machine's cores between them)."""
    if threads is not None and threads > 0:
        torch.set_num_threads(int(threads))
        os.environ["OMP_NUM_THREADS"] = str(int(threads))


@contextmanager
def intra_op_threads(threads: int) -> Iterator[None]:
    """Run the block with ``threads`` intra-op threads, then restore the previous setting."""
    previous = torch.get_num_threads()
    torch.set_num_threads(int(threads))
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def versions(extra: Sequence[str] = ()) -> dict[str, str]:
    """Versions of exray and of the libraries that determine its numbers, for result records."""
    from exray.version import __version__

    record = {
        "exray": __version__,
        "torch": torch.__version__,
        "numpy": np.__version__,
        "python": platform.python_version(),
    }
    for name in extra:
        try:
            module = __import__(name)
            record[name] = getattr(module, "__version__", "unknown")
        except ImportError:
            record[name] = "not installed"
    return record


def run_pooled(
    job: Callable[..., Any], tasks: Sequence[tuple[Any, ...]], workers: int, threads: int
) -> Iterator[tuple[int, Any, str | None]]:
    """``job(*task)`` for every task — in this process when ``workers`` is 1, else in ``workers`` spawned
    processes, each with ``threads`` intra-op threads — yielding ``(index, result, None)`` as each finishes,
    or ``(index, None, reason)`` when its worker process died. A job reports its own errors in its result.

    A dead worker (``kill -9``, the OOM killer, a crash in native code) breaks the whole pool and every task
    in flight with it: the pool is replaced, the tasks that were in flight run again one at a time, and only
    a task whose worker dies even alone is reported dead — once a fresh worker has been seen to run an
    empty task (else :class:`~exray.errors.ExrayError`: no worker can run here); the others go on in
    parallel, as :func:`exray.pipeline.batch.scan_many` does for scans. Stopping early (an exception in the
    consumer, Ctrl-C) kills the workers."""
    if workers == 1:
        for index, task in enumerate(tasks):
            yield index, job(*task), None
        return
    context = multiprocessing.get_context("spawn")
    pending: deque[int] = deque(range(len(tasks)))
    suspects: deque[int] = deque()  # in flight when a pool broke: each runs again alone
    while pending or suspects:
        with ProcessPoolExecutor(
            workers, mp_context=context, initializer=set_thread_budget, initargs=(threads,)
        ) as pool:
            inflight: dict[Future, int] = {}
            alone: int | None = None  # the suspect running by itself, if any
            broken = False
            try:
                while not broken:
                    if suspects and not inflight:
                        alone = suspects.popleft()
                        broken = not submit_or_requeue(pool, inflight, alone, suspects, job, *tasks[alone])
                        alone = None if broken else alone
                    while (
                        not broken and alone is None and not suspects and pending and len(inflight) < workers
                    ):
                        index = pending.popleft()
                        broken = not submit_or_requeue(pool, inflight, index, pending, job, *tasks[index])
                    if not inflight:
                        break
                    done, _ = wait(inflight, return_when=FIRST_COMPLETED)
                    for future in done:
                        index = inflight.pop(future)
                        try:
                            result = future.result()
                        except BrokenProcessPool as err:
                            broken = True
                            if index == alone:
                                check_workers_run(context, threads)
                                yield index, None, f"worker process died (it also dies alone): {err}"
                            else:
                                suspects.append(index)
                            continue
                        alone = None if index == alone else alone
                        yield index, result, None
                suspects.extend(inflight.values())  # the pool is broken: nothing in flight will finish
            except BaseException:
                kill_workers(pool)
                pool.shutdown(wait=False, cancel_futures=True)
                raise


def submit_or_requeue(
    pool: ProcessPoolExecutor,
    inflight: dict[Future, Any],
    key: Any,
    queue: deque,
    fn: Callable[..., Any],
    *args,
) -> bool:
    """Submit ``fn(*args)`` to ``pool`` as ``key`` of ``inflight``; if the pool broke since the last wait,
    put ``key`` back at the head of ``queue`` (it never ran: it keeps its place) and return False. Shared by
    :func:`run_pooled` and :func:`exray.pipeline.batch.scan_many`."""
    try:
        inflight[pool.submit(fn, *args)] = key
    except BrokenProcessPool:
        queue.appendleft(key)
        return False
    return True


def kill_workers(pool: ProcessPoolExecutor) -> None:
    """Kill every worker process of ``pool`` (ProcessPoolExecutor has no public handle on them)."""
    for process in list((getattr(pool, "_processes", None) or {}).values()):
        process.kill()


def check_workers_run(context: Any, threads: int) -> None:
    """Raise :class:`~exray.errors.ExrayError` unless a fresh worker process runs an empty task."""
    from exray.errors import ExrayError

    try:
        with ProcessPoolExecutor(
            1, mp_context=context, initializer=set_thread_budget, initargs=(threads,)
        ) as pool:
            pool.submit(os.getpid).result()
    except BrokenProcessPool:
        raise ExrayError(
            "worker processes die even on an empty task (a process limit, a failing start-up, or a script "
            'that starts parallel work without an `if __name__ == "__main__":` guard); rerun with one '
            "worker (--workers 1)"
        ) from None
