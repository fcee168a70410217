"""Model scores with their ground truth, for fitting a calibration (spec §2.10, `exray calibrate`): from
the JSON lines of `exray scan` (labels from each model directory's ground_truth.csv) or from the
evaluation.json of `exray evaluate` (labels from the zoo)."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from exray.errors import InputError
from exray.files import MAX_RESULTS_BYTES, read_results, read_text
from exray.metrics import cross_entropy
from exray.models.io import GROUND_TRUTH_FILE
from exray.pipeline.calibration import Calibration, fit
from exray.utils import versions


def labelled_scores(path: Path, method: str = "exray") -> tuple[list[float], list[int], bool]:
    """(scores, 0/1 labels, whether ``path`` is an evaluation.json) of the models in ``path``;
    ``method`` picks the row of an evaluation.json."""
    path = Path(path)
    models = evaluation_models(path)
    if models is not None:
        return (*evaluated_scores(path, models, method), True)
    return (*scanned_scores(path), False)


def _score(value: Any, path: Path) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise InputError(f"{path}: a model score must be a finite number, got {value!r}")
    if not 0.0 <= value <= 1.0:
        raise InputError(f"{path}: a model score must be in [0, 1], got {value!r}")
    return float(value)


def _label(value: Any, path: Path) -> int:
    if not isinstance(value, bool):
        raise InputError(f"{path}: 'poisoned' must be true or false, got {value!r}")
    return int(value)


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
            (_score(m["outcomes"][method]["score"], path), _label(m["poisoned"], path))
            for m in models
            if m["outcomes"].get(method, {}).get("score") is not None
        ]
    except InputError:
        raise
    except (KeyError, TypeError, ValueError, AttributeError):
        raise InputError(f"{path} is not an evaluation.json written by `exray evaluate`") from None
    if not pairs:
        rows = sorted({str(k) for m in models for k in m["outcomes"]})
        raise InputError(f"{path} has no scores of method {method!r}; its rows are {rows}")
    return [s for s, _ in pairs], [y for _, y in pairs]


def scanned_scores(path: Path) -> tuple[list[float], list[int]]:
    """Model scores of an ``exray scan`` results file and each model directory's ground truth."""
    records = [r for r in read_results(path).values() if r.get("score") is not None]
    if not records:
        raise InputError(f"{path} holds no scanned models")
    return [_score(r["score"], path) for r in records], [ground_truth(r["model"]) for r in records]


def calibrate_from(path: Path, method: str = "exray") -> tuple[Calibration, dict[str, Any]]:
    """The calibration fitted (:func:`~exray.pipeline.calibration.fit`) on the labelled scores in ``path``
    (:func:`labelled_scores`), with its provenance: the file, the method, the model counts and the TrojAI
    cross-entropy of the default constants and of the fit."""
    scores, labels, evaluation = labelled_scores(path, method)
    fitted = fit(scores, labels)
    provenance = {
        "fitted_on": str(path),
        "method": method if evaluation else "scan",
        "models": len(scores),
        "trojaned": sum(labels),
        "cross_entropy": {
            "default": cross_entropy([Calibration().probability(s) for s in scores], labels),
            "fitted": cross_entropy([fitted.probability(s) for s in scores], labels),
        },
        "versions": versions(),
    }
    return fitted, provenance
