"""Fit the demo's shipped calibration out of sample (issue 16 §6): build ``zoos/demo-calib.yaml`` (the demo's
design and size, another seed), evaluate it with exactly the settings of ``exray demo`` (ABS, then EX-RAY at
``block:-2`` under the round-2 rule and the cheap baselines), fit the score → P(trojaned) mapping on EX-RAY's
model scores and write it, with what it was fitted on, to ``src/exray/zoo/specs/demo-calibration.json`` —
which ``exray demo`` then applies to the demo zoo. Never fitted on the demo zoo itself. About 15 min on
2 cores (build ≈ 9 min, evaluation ≈ 5 min); not a test.

    .venv/bin/python benchmarks/demo_calibration.py [--spec zoos/demo-calib.yaml] [--out build/demo-calib]
"""

from __future__ import annotations

import argparse
from datetime import date
from pathlib import Path

from exray.evaluation import evaluate_zoo
from exray.evaluation.demo import DEMO_CALIBRATION, SHIPPED_ZOOS, demo_config
from exray.pipeline import fit
from exray.utils import versions
from exray.zoo import cached_build, default_workers, load_spec

ROOT = Path(__file__).resolve().parent.parent


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--spec", type=Path, default=ROOT / "zoos" / "demo-calib.yaml")
    parser.add_argument("--out", type=Path, default=ROOT / "build" / "demo-calib")
    parser.add_argument("--workers", type=int, default=default_workers())
    parser.add_argument("--save", type=Path, default=DEMO_CALIBRATION, help="where the calibration goes")
    args = parser.parse_args()
    if load_spec(args.spec).digest() == load_spec(SHIPPED_ZOOS / "demo.yaml").digest():
        raise SystemExit(f"{args.spec} is the demo zoo itself: the calibration must be out of sample")
    zoo = cached_build(args.spec, workers=args.workers, progress=True)
    config = demo_config()
    result = evaluate_zoo(zoo, args.out, config=config, progress=True)
    print(result.table())
    scores, labels = result.scores("exray")
    calibration = fit(scores, labels)
    provenance = {
        "fitted_on": args.spec.name,
        "spec_digest": load_spec(args.spec).digest(),
        "method": "exray",
        "settings": config.to_dict(),
        "models": len(labels),
        "trojaned": sum(labels),
        "date": str(date.today()),
        "versions": versions(),
    }
    provenance["settings"].pop("calibration", None)
    provenance["settings"].pop("calibration_source", None)
    calibration.save(args.save, provenance)
    print(f"\ncalibration fitted on {len(labels)} models of {args.spec.name}: {calibration}")
    print(f"saved to {args.save}")


if __name__ == "__main__":
    main()
