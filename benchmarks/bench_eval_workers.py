"""Wall time of an evaluation (ABS + EX-RAY over a population, ``evaluate_zoo``) with the machine's cores
spent as intra-op threads of one process (1 worker × N threads, the default before issue 19's budget work)
and as worker processes (N workers × 1 thread, the semantic study's), measured in one run on the same
models, each from empty evaluation caches.

The settings are the semantic study's (``studies/semantic.yaml``: ABS at its bound, EX-RAY's masks at
``precision: auto``, patience 20); the population is ``--zoo`` (a zoo directory, e.g. the study's
``build/study-semantic/population``) or the tests' v2 zoo (``zoos/tiny-v2.yaml``, built or reused through
``exray.zoo.cached_build``); ``--models`` takes the first N of it.

    .venv/bin/python benchmarks/bench_eval_workers.py [--zoo DIR] [--models 4] [--precision auto]

Run it on an otherwise idle machine. The two layouts may differ in a verdict (another thread count sums
floats in another order); the script prints how many model-level decisions agree.
"""

from __future__ import annotations

import argparse
import dataclasses
import platform
import shutil
import tempfile
import time
from datetime import date
from pathlib import Path

import torch

import exray
from exray.differencing import resolve_precision
from exray.evaluation import evaluate_zoo
from exray.evaluation.truth import read_truth
from exray.studies.semantic import load_spec
from exray.utils import available_cores
from exray.zoo import cached_build

STUDY = Path(__file__).resolve().parents[1] / "studies" / "semantic.yaml"


def subset(zoo: Path, count: int | None, into: Path) -> Path:
    """A population of the first ``count`` models of ``zoo`` (links to their directories), or ``zoo``."""
    if count is None:
        return zoo
    models, _ = read_truth(zoo)
    into.mkdir(parents=True)
    for model in models[:count]:
        (into / model.name).symlink_to(model.path.resolve())
    return into


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--zoo", type=Path, help="a labelled zoo directory (default: zoos/tiny-v2.yaml's)")
    parser.add_argument("--models", type=int, help="evaluate only the first N models")
    parser.add_argument("--precision", default="auto", help="EX-RAY's mask precision (default: auto)")
    args = parser.parse_args()
    spec = load_spec(STUDY)
    config = spec.evaluation()
    masks = dataclasses.replace(config.mask_config, precision=resolve_precision(args.precision, "cpu"))
    config = dataclasses.replace(config, mask_config=masks)
    cores = available_cores()
    if cores < 2:
        parser.error(f"this process may use {cores} core: there is nothing to compare")
    machine = platform.processor() or platform.machine()
    with tempfile.TemporaryDirectory(prefix="bench-eval-") as scratch:
        zoo = args.zoo or cached_build("zoos/tiny-v2.yaml", progress=True)
        zoo = subset(Path(zoo), args.models, Path(scratch) / "zoo")
        count = len(read_truth(zoo)[0])
        print(
            f"# bench_eval_workers — exray {exray.__version__}, {date.today()}, {machine}, {cores} cores, "
            f"torch {torch.__version__}; {count} models, masks {masks.precision}\n"
        )
        print("| layout | wall s | models / min |\n|---|---|---|")
        walls, flags = {}, {}
        # processes first: the threads' run then has this process warm (imports, the page cache), the
        # processes' run pays its workers' start-up — the comparison favours threads, if anything
        for workers, threads in ((cores, 1), (1, cores)):
            out = Path(scratch) / f"w{workers}"
            start = time.perf_counter()
            result = evaluate_zoo(
                zoo, out, config=config, progress=False, write=False, workers=workers, threads=threads
            )
            walls[workers] = time.perf_counter() - start
            flags[workers] = {
                m.name: m.outcomes["exray"].flagged for m in result.models if "exray" in m.outcomes
            }
            shutil.rmtree(out)
            label = f"{workers} worker(s) × {threads} thread(s)"
            print(f"| {label} | {walls[workers]:.0f} | {count / walls[workers] * 60:.1f} |")
    both = flags[1].keys() & flags[cores].keys()
    agree = sum(flags[1][name] == flags[cores][name] for name in both)
    print(
        f"\nprocesses / threads: ×{walls[1] / walls[cores]:.2f} faster; "
        f"EX-RAY's decisions agree on {agree} of {len(both)} models"
    )


if __name__ == "__main__":
    main()
