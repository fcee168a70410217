"""Test-session settings shared by every test module, and the knobs that rebuild the trained fixtures.

Tests that train models (the tiny zoo, the training-loop and SDRM tests, …) must hold on any rebuild of
their fixtures: another CPU sums gradients in another order and trains other weights. Two environment
variables stand in for another machine (tests/README.md):

* ``EXRAY_TEST_SEED=K`` shifts every trained fixture's seed by K (the tiny zoo is built from
  ``zoos/tiny.yaml`` with ``seed + K``); ``fixture_seed(base)`` gives a test its shifted seed.
* ``EXRAY_TEST_THREADS=N`` trains every fixture on N intra-op threads (the tiny zoo is built with
  ``train_threads=N`` and cached apart from the one-thread build).
"""

import os
from pathlib import Path

import pytest
import torch

ZOOS = Path(__file__).resolve().parents[1] / "zoos"
TINY_SPEC = ZOOS / "tiny.yaml"
TINY_V2_SPEC = ZOOS / "tiny-v2.yaml"


def _env_int(name: str, default: int, minimum: int) -> int:
    raw = os.environ.get(name, "")
    try:
        value = int(raw) if raw else default
    except ValueError:
        raise pytest.UsageError(f"{name} must be an integer, got {raw!r}") from None
    if value < minimum:
        raise pytest.UsageError(f"{name} must be >= {minimum}, got {value}")
    return value


SEED_OFFSET = _env_int("EXRAY_TEST_SEED", 0, 0)
#: One intra-op thread by default, with or without pytest-xdist (`make test` runs two workers on a 2-core
#: machine), so that every trained fixture trains the same way however the suite is run.
THREADS = _env_int("EXRAY_TEST_THREADS", 1, 1)
torch.set_num_threads(THREADS)


@pytest.fixture(autouse=True)
def two_cores_at_least(monkeypatch):
    """Tests run the parallel paths (two worker processes) on any machine: on a 1-core runner exray would
    cap two workers at one with a warning (an error under the suite's filterwarnings)."""
    from exray import utils

    if utils.available_cores() < 2:
        monkeypatch.setattr(utils, "available_cores", lambda: 2)


def fixture_seed(base: int) -> int:
    """The seed a trained fixture uses: ``base`` shifted by ``EXRAY_TEST_SEED``."""
    return base + SEED_OFFSET


def pytest_report_header(config: pytest.Config) -> str:
    return f"exray fixtures: EXRAY_TEST_SEED={SEED_OFFSET} EXRAY_TEST_THREADS={THREADS}"


def tiny_spec(path: Path = TINY_SPEC):
    """``zoos/tiny.yaml`` (or another test spec) with its seed shifted by ``EXRAY_TEST_SEED``."""
    from dataclasses import replace

    from exray.zoo import load_spec

    spec = load_spec(path)
    return replace(spec, seed=fixture_seed(spec.seed))


@pytest.fixture(scope="session")
def tiny_zoo() -> Path:
    """The directory of the tiny zoo, built on first use into ``$EXRAY_CACHE`` (or ``~/.cache/exray``)
    and reused by every later test session. Tests that use it carry ``@pytest.mark.xdist_group`` so that
    `make test` (``pytest -n 2 --dist loadgroup``) runs them on one worker; :func:`exray.zoo.cached_build`
    also holds a file lock, so two workers never build the same zoo twice."""
    from exray.zoo import cached_build

    return cached_build(tiny_spec(), workers=2, train_threads=THREADS)


@pytest.fixture(scope="session")
def tiny_v2_zoo() -> Path:
    """The tests' population-v2 zoo (``zoos/tiny-v2.yaml``: two trojaned models of the Table-1 design), built
    and cached as :func:`tiny_zoo`; its tests carry ``@pytest.mark.xdist_group("tiny_v2_zoo")``."""
    from exray.zoo import cached_build

    return cached_build(tiny_spec(TINY_V2_SPEC), workers=2, train_threads=THREADS)


@pytest.fixture(autouse=True)
def _no_job_array(monkeypatch):
    """`exray scan` takes its shard from a job array's variables: a test run inside a Slurm array task must
    not shard the tests' scans (tests/pipeline/test_shards.py sets them where it means to)."""
    for name in (
        "SLURM_ARRAY_TASK_ID",
        "SLURM_ARRAY_TASK_COUNT",
        "SLURM_ARRAY_TASK_MIN",
        "JOB_COMPLETION_INDEX",
    ):
        monkeypatch.delenv(name, raising=False)
