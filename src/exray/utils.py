"""Small shared helpers: seeding, thread budgets, version records."""

from __future__ import annotations

import multiprocessing
import os
import platform
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
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
    or ``(index, None, reason)`` when its worker process died. A job reports its own errors in its result."""
    if workers == 1:
        for index, task in enumerate(tasks):
            yield index, job(*task), None
        return
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(
        workers, mp_context=context, initializer=set_thread_budget, initargs=(threads,)
    ) as pool:
        futures = {pool.submit(job, *task): index for index, task in enumerate(tasks)}
        try:
            for future in as_completed(futures):
                try:
                    yield futures[future], future.result(), None
                except BrokenProcessPool as err:
                    yield futures[future], None, f"worker process died: {err}"
        except BaseException:
            pool.shutdown(wait=False, cancel_futures=True)
            raise
