"""Neural Cleanse's size bound fitted on a calibration zoo, from the cached verdicts of a Table-3 run.

Neural Cleanse reports a label-specific pair when its trigger flips the victim and its mask norm is within
``max_norm_fraction`` of the image area (default: ABS's 1600/224² ≈ 3.19 %). The bound only filters the
inverted pairs, so the triggers NC reports at a tighter bound are the cached ones whose norm is within it,
and the models a row flags follow from them: NC alone flags a model with such a trigger, NC + EX-RAY one
with such a trigger that EX-RAY did not prune. This script reads the ``evaluation.json`` and scan cache of
the calibration zoo and of the table's zoo (``benchmarks/table1.py --scanner nc`` outputs), picks on the
calibration zoo, for each row, the bound of a fixed grid with the best accuracy (ties: the larger bound),
and prints both zoos over the grid and the out-of-sample accuracies at the picked bounds.

It is a pilot: EX-RAY's verdicts are the ones computed with every trigger of the default bound judged in
one batched call; each mask problem has its own seed, so a run with ``--scanner-option
max_norm_fraction=F`` judges the kept triggers alike up to the float order of a smaller batch.

    .venv/bin/python benchmarks/nc_size_bound.py build/v2/table3-nc/calibration-zoo build/v2/table3-nc
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

#: Bounds tried, as fractions of the image area (the last is ABS's default).
GRID = (0.005, 0.0075, 0.01, 0.0125, 0.015, 0.02, 0.025, 1600 / 224**2)


def load(directory: Path) -> tuple[list[tuple[bool, list[tuple[float, bool]]]], int]:
    """Per model: (trojaned, [(norm, kept by EX-RAY)]), and the image area."""
    evaluation = json.loads((directory / "evaluation.json").read_text())
    models, area = [], 0
    for model in evaluation["models"]:
        scan = json.loads((directory / "cache" / "scan-nc" / f"{model['model']}.json").read_text())
        if len(scan["triggers"]) != len(model["triggers"]):
            raise SystemExit(f"{directory}: the scan cache of {model['model']} does not match the evaluation")
        triggers = []
        for found, judged in zip(scan["triggers"], model["triggers"], strict=True):
            kept = (judged["scores"].get("exray") or 0.0) > 0.0
            triggers.append((float(found["details"]["norm"]), kept))
        models.append((bool(model["poisoned"]), triggers))
        size = scan["triggers"][0]["trigger"].get("size") if scan["triggers"] else None
        area = area or (size[0] * size[1] if isinstance(size, list) and len(size) == 2 else 0)
    return models, area


def outcome(models, bound_px: float, exray: bool) -> tuple[float, int, int]:
    """(accuracy, TP, FP) when a model is flagged by a trigger within ``bound_px`` (kept by EX-RAY)."""
    tp = fp = correct = 0
    for trojaned, triggers in models:
        flagged = any(norm <= bound_px and (kept or not exray) for norm, kept in triggers)
        tp += flagged and trojaned
        fp += flagged and not trojaned
        correct += flagged == trojaned
    return correct / len(models), tp, fp


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("calibration", type=Path, help="the calibration zoo's evaluation directory")
    parser.add_argument("table", type=Path, help="the table zoo's evaluation directory")
    parser.add_argument("--area", type=int, default=32 * 32, help="image area in pixels (default 32×32)")
    args = parser.parse_args()
    calibration, _ = load(args.calibration)
    table, _ = load(args.table)
    print("| bound (% of area, px) | calib NC: acc TP/FP | calib NC+EX-RAY | table NC | table NC+EX-RAY |")
    print("|---|---|---|---|---|")
    for fraction in GRID:
        px = fraction * args.area
        cells = []
        for models in (calibration, table):
            for exray in (False, True):
                acc, tp, fp = outcome(models, px, exray)
                cells.append(f"{acc:.3f} {tp}/{fp}")
        print(f"| {100 * fraction:.2f} %, {px:.1f} | " + " | ".join(cells) + " |")
    print()
    for name, exray in (("NC alone", False), ("NC + EX-RAY", True)):
        scored = [(outcome(calibration, f * args.area, exray)[0], f) for f in GRID]
        best = max(scored)[0]
        picked = max(f for acc, f in scored if acc == best)  # ties: the larger bound
        acc, tp, fp = outcome(table, picked * args.area, exray)
        print(
            f"{name}: bound fitted on the calibration zoo {100 * picked:.2f} % (calibration accuracy "
            f"{best:.3f}); on the table's zoo: accuracy {acc:.3f}, TP {tp}, FP {fp}"
        )


if __name__ == "__main__":
    main()
