"""Models per minute of a batch scan on the local process pool and on Ray, at 1 and 2 workers, and the
scaling efficiency of each (issue 18 §5), measured in one run on the same models.

The models are the tiny zoo's (``zoos/tiny.yaml``, built or reused through ``exray.zoo.cached_build``),
each scanned ``--repeat`` times with ABS alone at a small budget (the dispatch is what is measured, not
EX-RAY). Every configuration gets the same thread budget per worker (cores / workers). Ray runs on a local
instance started once before the Ray rows; its start-up and the first tasks' worker start-up (importing
torch in fresh processes) are printed apart, after one warm-up batch, so that the rates compare steady
states. Efficiency = rate at 2 workers / (2 × rate at 1 worker).

    .venv/bin/python benchmarks/bench_scale.py [--repeat 2] [--epochs 10] [--no-ray]

Run it on an otherwise idle machine.
"""

from __future__ import annotations

import argparse
import platform
import time
from datetime import date

import torch

import exray
from exray.pipeline import ScanOptions, scan_many
from exray.pipeline.ray_backend import RayBackend, import_ray
from exray.utils import available_cores
from exray.zoo import cached_build, read_metadata


def rate(
    paths: list[str], options: ScanOptions, workers: int, backend: RayBackend | None
) -> tuple[float, int]:
    """(models per minute, failed models) of one batch."""
    start = time.perf_counter()
    records = list(scan_many(paths, options, workers=workers, progress=False, backend=backend))
    minutes = (time.perf_counter() - start) / 60
    return len(records) / minutes, sum(r["error"] is not None for r in records)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=2, help="scans of each of the tiny zoo's 4 models")
    parser.add_argument("--epochs", type=int, default=10, help="ABS inversion epochs per model")
    parser.add_argument("--no-ray", action="store_true", help="the local pool only")
    args = parser.parse_args()
    zoo = cached_build("zoos/tiny.yaml", progress=True)
    paths = [str(zoo / row["name"]) for row in read_metadata(zoo)] * args.repeat
    options = ScanOptions(refine=None, scanner_options={"epochs": args.epochs}, device="cpu")
    cores = available_cores()
    machine = platform.processor() or platform.machine()
    print(
        f"# bench_scale — exray {exray.__version__}, {date.today()}, {machine}, {cores} cores, "
        f"torch {torch.__version__}; {len(paths)} scans per row (ABS, {args.epochs} epochs)\n"
    )
    rates: dict[str, dict[int, float]] = {"local": {}}
    rate(paths[:1], options, 1, None)  # warm the caches of this process
    for workers in (1, 2):
        rates["local"][workers], failed = rate(paths, options, workers, None)
        print(f"local pool  {workers} worker(s): {rates['local'][workers]:6.2f} models/min ({failed} failed)")
    if not args.no_ray:
        ray = import_ray()
        start = time.perf_counter()
        ray.init(num_cpus=cores, include_dashboard=False, log_to_driver=False, configure_logging=False)
        print(f"Ray: local instance started in {time.perf_counter() - start:.1f} s")
        rates["ray"] = {}
        try:
            for workers in (1, 2):
                backend = RayBackend(cpus=max(1, cores // workers))
                start = time.perf_counter()
                rate(paths[:workers], options, workers, backend)  # fresh workers import torch and exray
                print(f"Ray: warm-up of {workers} worker(s) {time.perf_counter() - start:.1f} s")
                rates["ray"][workers], failed = rate(paths, options, workers, backend)
                per_minute = rates["ray"][workers]
                print(f"Ray         {workers} worker(s): {per_minute:6.2f} models/min ({failed} failed)")
        finally:
            ray.shutdown()
    print()
    for name, by_workers in rates.items():
        efficiency = by_workers[2] / (2 * by_workers[1])
        print(f"{name:6s} scaling efficiency 1 → 2 workers: {efficiency:.2f}")
    if "ray" in rates:
        print(f"Ray / local at 2 workers: {rates['ray'][2] / rates['local'][2]:.2f}")


if __name__ == "__main__":
    main()
