"""``exray calibrate``: fit the score → probability mapping on a labelled scan (spec §2.10)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from exray.errors import InputError
from exray.files import MAX_RESULTS_BYTES, read_text
from exray.metrics import cross_entropy
from exray.models.io import GROUND_TRUTH_FILE
from exray.pipeline import Calibration, fit, read_results
from exray.utils import versions


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


def ground_truth(model_dir: str) -> int:
    path = Path(model_dir) / GROUND_TRUTH_FILE
    try:
        flag = read_text(path, "ground truth", limit=64).strip()
    except InputError:
        flag = None
    if flag not in ("0", "1"):
        raise InputError(f"{path} is missing or does not hold 0/1")
    return int(flag)


def evaluation_models(path: Path) -> list[dict] | None:
    """The per-model entries when ``path`` is an ``exray evaluate`` evaluation.json (one JSON object with
    ``models``), else None: then it is read as the JSON lines of ``exray scan``, whatever its suffix."""
    text = read_text(path, "results file", limit=MAX_RESULTS_BYTES)
    try:
        document = json.loads(text)
    except (ValueError, RecursionError):  # several lines of JSON: a scan results file
        return None
    if isinstance(document, dict) and isinstance(document.get("models"), list):
        return document["models"]
    return None


def evaluated_scores(path: Path, models: list[dict], method: str) -> tuple[list[float], list[int]]:
    """Model scores of ``method`` and the ground truth from the entries of an evaluation.json."""
    try:
        pairs = [
            (float(m["outcomes"][method]["score"]), int(m["poisoned"]))
            for m in models
            if m["outcomes"].get(method, {}).get("score") is not None
        ]
    except (KeyError, TypeError, ValueError, AttributeError):
        raise InputError(f"{path} is not an evaluation.json written by `exray evaluate`") from None
    if not pairs:
        rows = sorted({k for m in models for k in m["outcomes"]})
        raise InputError(f"{path} has no scores of method {method!r}; its rows are {rows}")
    return [s for s, _ in pairs], [y for _, y in pairs]


def scanned_scores(path: Path) -> tuple[list[float], list[int]]:
    """Model scores of an ``exray scan`` results file and each model directory's ground truth."""
    records = [r for r in read_results(path).values() if r.get("score") is not None]
    if not records:
        raise InputError(f"{path} holds no scanned models")
    return [float(r["score"]) for r in records], [ground_truth(r["model"]) for r in records]


def run(args: argparse.Namespace) -> int:
    models = evaluation_models(args.results)
    evaluation = models is not None
    if evaluation:
        scores, labels = evaluated_scores(args.results, models, args.method)
    else:
        scores, labels = scanned_scores(args.results)
    fitted = fit(scores, labels)
    before = cross_entropy([Calibration().probability(s) for s in scores], labels)
    after = cross_entropy([fitted.probability(s) for s in scores], labels)
    provenance = {
        "fitted_on": str(args.results),
        "method": args.method if evaluation else "scan",
        "models": len(scores),
        "trojaned": sum(labels),
        "cross_entropy": {"default": before, "fitted": after},
        "versions": versions(),
    }
    fitted.save(args.out, provenance)
    print(f"{len(scores)} models: cross-entropy {before:.4f} (default) -> {after:.4f} (fitted)")
    print(f"wrote {args.out}")
    return 0
