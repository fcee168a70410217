"""Per-trigger statistics of EX-RAY's cached verdicts in one or more evaluation directories (``exray
evaluate --out`` / ``benchmarks/table1.py --out``): how well the verdict and the mask overlap separate
injected from natural triggers, how large the masks are, how many ran the whole epoch budget — and the
model-level TP/FP at one common flagging threshold, so that runs calibrated differently (a layer
ablation: each layer's calibration is fitted on its own) can be compared on the same triggers. Not a test.

    .venv/bin/python benchmarks/verdict_stats.py build/v2/table1-abs build/v2/ablation-block-1 \
        [--gate 0.883] [--method exray]

Only triggers whose ASR reaches ``--gate`` count (default: the first directory's calibration threshold).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from sklearn.metrics import roc_auc_score

TOLERANCE = 1e-6


def auc(labels: list[bool], scores: list[float]) -> float | None:
    return float(roc_auc_score(labels, scores)) if 0 < sum(labels) < len(labels) else None


def stats(directory: Path, gate: float, method: str) -> dict:
    evaluation = json.loads((directory / "evaluation.json").read_text())
    rows = []
    flags = {}
    for model in evaluation["models"]:
        if model["triggers"] is None:
            continue
        cache = directory / "cache" / method / f"{model['model']}.json"
        record = json.loads(cache.read_text()) if cache.is_file() else {"indices": [], "scores": []}
        verdicts = dict(zip(record["indices"], record["scores"]))
        flagged = False
        for i, trigger in enumerate(model["triggers"]):
            if trigger["asr"] < gate - TOLERANCE:
                continue
            score = verdicts.get(i)
            verdict = (score or {}).get("verdict")
            if verdict is None:  # strong but not judged: kept
                flagged = True
                continue
            flagged |= score["value"] >= 0.5
            rows.append(
                {
                    "injected": bool(trigger["injected"]),
                    "kind": trigger["kind"],
                    "value": score["value"],
                    "overlap": max(verdict["overlap"]),
                    "m1": verdict["coverage"][0],
                    "m2": verdict["coverage"][1],
                    "epochs": verdict["epochs_run"],
                }
            )
        flags[model["model"]] = (bool(model["poisoned"]), flagged)
    budget = evaluation["config"]["mask_config"]["epochs"]
    out = {
        "dir": str(directory),
        "layer": evaluation["config"]["layer"],
        "triggers": len(rows),
        "injected": sum(r["injected"] for r in rows),
        "median M1 share of C": float(np.median([r["m1"] for r in rows])) if rows else None,
        "median M2 share of C": float(np.median([r["m2"] for r in rows])) if rows else None,
        "masks at the epoch budget": f"{sum(e >= budget for r in rows for e in r['epochs'])}/{2 * len(rows)}",
    }
    for kind in (None, "patch", "filter"):
        chosen = [r for r in rows if kind is None or r["kind"] == kind]
        labels = [r["injected"] for r in chosen]
        name = kind or "all"
        out[f"AUC verdict ({name})"] = auc(labels, [r["value"] for r in chosen])
        out[f"AUC -overlap ({name})"] = auc(labels, [-r["overlap"] for r in chosen])
    tp = sum(p and f for p, f in flags.values())
    fp = sum(f and not p for p, f in flags.values())
    out["models"] = len(flags)
    out["TP/FP at the gate"] = f"{tp}/{fp}"
    out["accuracy at the gate"] = sum(p == f for p, f in flags.values()) / len(flags) if flags else None
    return out


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("dirs", nargs="+", type=Path)
    parser.add_argument("--gate", type=float, help="ASR from which triggers count and flag a model")
    parser.add_argument("--method", default="exray")
    args = parser.parse_args()
    gate = args.gate
    if gate is None:
        first = json.loads((args.dirs[0] / "evaluation.json").read_text())
        gate = first["config"]["calibration"]["threshold"]
    print(f"gate: triggers with ASR >= {gate:.4g}; method {args.method}\n")
    results = [stats(d, gate, args.method) for d in args.dirs]
    keys = [k for k in results[0] if k != "dir"]
    print("| | " + " | ".join(r["dir"] for r in results) + " |")
    print("|---|" + "---|" * len(results))
    for key in keys:
        cells = [r[key] for r in results]
        text = [f"{c:.3f}" if isinstance(c, float) else str(c) for c in cells]
        print(f"| {key} | " + " | ".join(text) + " |")


if __name__ == "__main__":
    main()
