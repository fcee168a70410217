"""exray.utils: the process pool that survives a dead worker (``run_pooled``) and the core count."""

import os
import time

from exray.utils import available_cores, run_pooled


def square_or_die(value: int) -> int:
    """A job (module level, so spawned workers can import it): -1 kills its worker as ``kill -9`` or the
    OOM killer would; the others take a moment, so that several are in flight when it dies."""
    if value < 0:
        os._exit(9)
    time.sleep(0.3)
    return value * value


def test_a_dead_worker_costs_only_its_task_and_the_others_run_to_the_end():
    tasks = [(1,), (-1,), (2,), (3,), (4,)]
    seen = {index: (result, died) for index, result, died in run_pooled(square_or_die, tasks, 2, 1)}
    assert sorted(seen) == list(range(len(tasks)))  # every task reported once
    assert seen[1][0] is None and "died" in seen[1][1]
    assert {i: seen[i] for i in (0, 2, 3, 4)} == {0: (1, None), 2: (4, None), 3: (9, None), 4: (16, None)}


def test_one_worker_runs_the_tasks_in_this_process_in_order():
    assert list(run_pooled(abs, [(-2,), (3,)], 1, 1)) == [(0, 2, None), (1, 3, None)]
    assert 1 <= available_cores() <= (os.cpu_count() or 1)
