"""Per-model resource ceilings for batch scans (issue 20 §5): wall-clock seconds and memory.

A batch with a budget scans every model in a worker process (``scan_many`` switches to one even for
``workers=1``), so that a model over its budget costs only its own result:

* **time** — an interval timer in the worker raises :class:`BudgetExceeded` between two PyTorch operations
  once ``seconds`` have passed; the parent kills a worker that is still busy ``HARD_KILL_GRACE`` seconds
  later (stuck in native code where no signal is handled) and records the model as over its budget;
* **memory** — a soft ``RLIMIT_DATA`` (heap and private anonymous mappings, where PyTorch's CPU tensors live)
  of what the worker already holds plus ``memory_gb``: an allocation beyond it fails in that model's scan,
  which is recorded as over its memory budget instead of waking the kernel's OOM killer. Linux only.
"""

from __future__ import annotations

import math
import re
import signal
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from exray.errors import ConfigError

#: Seconds past a model's time budget after which the parent kills its worker process.
HARD_KILL_GRACE = 30.0

#: Substrings of the errors an allocation beyond the memory budget raises (Python, PyTorch's allocator).
_OUT_OF_MEMORY = ("MemoryError", "can't allocate memory", "std::bad_alloc")


class BudgetExceeded(BaseException):
    """Raised in a worker when its model's time budget has run out. A ``BaseException``, like
    ``KeyboardInterrupt``, so that no broad ``except Exception`` inside a scan can swallow it."""


#: Largest budgets accepted: 30 days per model, 1 PiB of memory (beyond them a number is a typo, and the
#: OS calls they feed overflow).
BUDGET_LIMITS = {"seconds": 30 * 86400.0, "memory_gb": 2.0**20}


@dataclass(frozen=True)
class ModelBudget:
    """The ceilings for one model's scan; ``None`` leaves a resource unbounded."""

    seconds: float | None = None
    memory_gb: float | None = None

    def __post_init__(self) -> None:
        for name in ("seconds", "memory_gb"):
            value = getattr(self, name)
            if value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
                raise ConfigError(f"budget {name} must be a finite number, got {value!r}")
            if not 0 < value <= BUDGET_LIMITS[name]:
                raise ConfigError(f"budget {name} must be in (0, {BUDGET_LIMITS[name]:g}], got {value!r}")
        if self.memory_gb is not None and not sys.platform.startswith("linux"):
            raise ConfigError("a per-model memory budget needs Linux (RLIMIT_DATA); leave it unset here")

    @property
    def active(self) -> bool:
        return self.seconds is not None or self.memory_gb is not None

    @property
    def hard_deadline(self) -> float | None:
        """Seconds after which the parent kills a worker still busy with the model."""
        return None if self.seconds is None else self.seconds + HARD_KILL_GRACE

    def time_message(self) -> str:
        return f"the scan exceeded its time budget of {self.seconds:g} s (--max-model-seconds)"

    def memory_message(self, error: str) -> str:
        return (
            f"the scan exceeded its memory budget of {self.memory_gb:g} GB (--max-model-memory): "
            + error.split(" | ")[0]
        )

    def out_of_memory(self, error: str | None) -> bool:
        """Whether a recorded error is an allocation that failed under this budget's memory limit."""
        return self.memory_gb is not None and bool(error) and any(s in error for s in _OUT_OF_MEMORY)


def _data_bytes() -> int:
    """This process's data size (``VmData``): what ``RLIMIT_DATA`` is compared with."""
    status = Path("/proc/self/status").read_text()
    match = re.search(r"^VmData:\s+(\d+) kB", status, re.MULTILINE)
    if match is None:
        raise ConfigError("cannot read VmData from /proc/self/status for the memory budget")
    return int(match.group(1)) * 1024


@contextmanager
def enforced(budget: ModelBudget) -> Iterator[None]:
    """Run the block under ``budget`` (in a worker process's main thread): :class:`BudgetExceeded` when the
    time is up, failing allocations beyond the memory budget. Both are lifted when the block ends."""
    previous_handler = None
    previous_limit = None
    if budget.seconds is not None:

        def _expire(signum: int, frame: object) -> None:
            raise BudgetExceeded(budget.time_message())

        previous_handler = signal.signal(signal.SIGALRM, _expire)
        signal.setitimer(signal.ITIMER_REAL, budget.seconds)
    if budget.memory_gb is not None:
        import resource

        previous_limit = resource.getrlimit(resource.RLIMIT_DATA)
        soft = _data_bytes() + int(budget.memory_gb * 2**30)
        hard = previous_limit[1]
        if hard != resource.RLIM_INFINITY:
            soft = min(soft, hard)
        resource.setrlimit(resource.RLIMIT_DATA, (soft, hard))
    try:
        yield
    finally:
        if budget.seconds is not None:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, previous_handler)
        if previous_limit is not None:
            import resource

            resource.setrlimit(resource.RLIMIT_DATA, previous_limit)
