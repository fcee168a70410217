"""The demo's table over rebuilds of its zoo: how much of `make demo`'s result is one build's luck?

A zoo trained on another CPU (or with another thread count, or from another seed) is another set of
weights, and the demo's numbers move with it. This script runs `exray demo` (the same scanner, methods,
layer and mask settings) on ``zoos/demo.yaml`` rebuilt with each seed of ``--seeds`` (and
``--train-threads``), then prints, per method, the overall row of every build and the spread (mean, min,
max of accuracy; TP and FP counts). Each build and its scans are cached (``$EXRAY_CACHE`` and
``--out``/seed-N), so an interrupted run resumes. About 20–30 min per seed on 2 cores from nothing.

    .venv/bin/python benchmarks/demo_rebuilds.py --seeds 7 8 9 [--json build/demo-rebuilds.json]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import statistics
from pathlib import Path

import yaml

from exray.cli import main as exray_main
from exray.evaluation.demo import SHIPPED_ZOOS
from exray.utils import versions

ROOT = Path(__file__).resolve().parent.parent


def run_seed(seed: int, out: Path, threads: int) -> list[dict]:
    """`exray demo --json` on the demo spec with ``seed``; the overall rows."""
    spec = yaml.safe_load((SHIPPED_ZOOS / "demo.yaml").read_text())
    spec["seed"] = seed
    folder = out / (f"seed-{seed}" + ("" if threads == 1 else f"-t{threads}"))
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "demo.yaml"
    path.write_text(yaml.safe_dump(spec))
    args = ["demo", "--spec", str(path), "--out", str(folder / "evaluation"), "--json", "--quiet"]
    if threads != 1:
        args += ["--train-threads", str(threads)]
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        code = exray_main(args)
    if code != 0:
        raise SystemExit(f"exray demo failed for seed {seed} (exit {code})")
    rows = json.loads(printed.getvalue())["rows"]
    return [r for r in rows if r["group"] == "all"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[7, 8, 9], help="zoo seeds (7 = shipped)")
    parser.add_argument("--train-threads", type=int, default=1, help="threads each zoo model trains on")
    parser.add_argument("--out", type=Path, default=ROOT / "build" / "demo-rebuilds")
    parser.add_argument("--json", type=Path, help="also write every row here")
    args = parser.parse_args()

    by_seed = {}
    for seed in args.seeds:
        by_seed[seed] = run_seed(seed, args.out, args.train_threads)
        print(f"seed {seed} done", flush=True)

    methods = [r["method"] for r in by_seed[args.seeds[0]]]
    header = f"{'method':<10}" + "".join(f" {'seed ' + str(s):>16}" for s in args.seeds)
    print("\noverall group (6 trojaned, 6 clean per build): TP/FP accuracy")
    print(header + f" {'accuracy mean [min, max]':>27}")
    for method in methods:
        cells, accs = [], []
        for seed in args.seeds:
            row = next(r for r in by_seed[seed] if r["method"] == method)
            accs.append(row["accuracy"])
            cells.append(f"{row['tp']}/{row['fp']} {row['accuracy']:.3f}")
        spread = f"{statistics.mean(accs):.3f} [{min(accs):.3f}, {max(accs):.3f}]"
        print(f"{method:<10}" + "".join(f" {c:>16}" for c in cells) + f" {spread:>27}")
    if args.json is not None:
        record = {
            "seeds": args.seeds,
            "train_threads": args.train_threads,
            "rows": by_seed,
            "versions": versions(),
        }
        args.json.write_text(json.dumps(record, indent=1))


if __name__ == "__main__":
    main()
