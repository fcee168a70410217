"""``exray calibrate``: fit the score → probability mapping on a labelled scan (spec §2.10)."""

from __future__ import annotations

import argparse
from pathlib import Path

from exray.files import check_writable
from exray.models.io import GROUND_TRUTH_FILE
from exray.pipeline.labelled import calibrate_from


def add_parser(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "calibrate",
        help="fit P(trojaned) to ground truth from `exray scan` or `exray evaluate` results",
        description=(
            "Read the model scores of a results file and each model's ground truth, and fit the logistic "
            "calibration that minimises the TrojAI cross-entropy. From an `exray scan` results file the "
            f"labels are the model directories' {GROUND_TRUTH_FILE}; from the evaluation.json of "
            "`exray evaluate` they are the zoo's, and --method picks the row whose scores are fitted."
        ),
    )
    parser.add_argument(
        "results", type=Path, help="JSON-lines file of `exray scan`, or evaluation.json of `exray evaluate`"
    )
    parser.add_argument(
        "--method", default="exray", help="with an evaluation.json: the method (row) to calibrate"
    )
    parser.add_argument(
        "--out", type=Path, default=Path("calibration.json"), help="calibration JSON to write"
    )
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    check_writable(args.out, "--out")
    fitted, provenance = calibrate_from(args.results, args.method)
    fitted.save(args.out, provenance)
    before, after = provenance["cross_entropy"]["default"], provenance["cross_entropy"]["fitted"]
    print(f"{provenance['models']} models: cross-entropy {before:.4f} (default) -> {after:.4f} (fitted)")
    print(f"wrote {args.out}")
    return 0
