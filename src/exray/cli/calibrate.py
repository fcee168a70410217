"""``exray calibrate``: fit the score → probability mapping on a labelled scan (spec §2.10)."""

from __future__ import annotations

import argparse
from pathlib import Path

from exray.errors import InputError
from exray.metrics import cross_entropy
from exray.models.io import GROUND_TRUTH_FILE
from exray.pipeline import Calibration, fit, read_results


def add_parser(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "calibrate",
        help="fit P(trojaned) to ground truth from an `exray scan` results file",
        description=(
            "Read the model scores of a results file, the ground truth of each model directory "
            f"({GROUND_TRUTH_FILE}), and fit the logistic calibration that minimises the TrojAI "
            "cross-entropy."
        ),
    )
    parser.add_argument("results", type=Path, help="JSON-lines file written by `exray scan`")
    parser.add_argument(
        "--out", type=Path, default=Path("calibration.json"), help="calibration JSON to write"
    )
    parser.set_defaults(run=run)


def ground_truth(model_dir: str) -> int:
    path = Path(model_dir) / GROUND_TRUTH_FILE
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError):
        raise InputError(f"{path} is missing or does not hold 0/1") from None


def run(args: argparse.Namespace) -> int:
    records = [r for r in read_results(args.results).values() if r.get("score") is not None]
    if not records:
        raise InputError(f"{args.results} holds no scanned models")
    scores = [float(r["score"]) for r in records]
    labels = [ground_truth(r["model"]) for r in records]
    fitted = fit(scores, labels)
    before = cross_entropy([Calibration().probability(s) for s in scores], labels)
    after = cross_entropy([fitted.probability(s) for s in scores], labels)
    fitted.save(args.out)
    print(f"{len(records)} models: cross-entropy {before:.4f} (default) -> {after:.4f} (fitted)")
    print(f"wrote {args.out}")
    return 0
