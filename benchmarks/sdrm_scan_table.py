"""Do SDRM models also escape model-level scanning? (issue 17 §5) The table of an ``exray scan`` over an SDRM
study's RBT and SDRM models: per run and variant, ABS's triggers, whether ABS alone and ABS + EX-RAY flag the
model, how many of ABS's triggers reach the planted target with ASR ≥ the calibration's threshold ("found"),
and how many of those EX-RAY judged injected ("kept"). Not a test.

    exray scan build/sdrm-paper/runs/*/*/model --out build/sdrm-paper/scan.jsonl --workers 2 \\
        --layer block:-2 --policy r2 --precision fp32 --patience 40 --scanner-option epochs=20 \\
        --scanner-option top_n_neurons=2 --device cpu
    .venv/bin/python benchmarks/sdrm_scan_table.py build/sdrm-paper/scan.jsonl \\
        --csv docs/results/sdrm-paper-scan.csv

The planted target of each run is read from the ground truth in its model directory (``config.json``).
"""

from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path

from exray.pipeline import Calibration
from exray.refinement import ASR_TOLERANCE

FIELDS = (
    "run",
    "variant",
    "abs_triggers",
    "flagged_abs",
    "flagged_abs_exray",
    "target_found",
    "target_kept_by_exray",
    "probability",
)


def planted_target(model_dir: Path) -> int:
    """The run's target class, from the ground truth in the model directory's ``config.json``."""
    config = json.loads((model_dir / "config.json").read_text())
    (trigger,) = config["triggers"]
    return int(trigger["target_class"])


def rows(results: Path, threshold: float) -> list[dict]:
    table = []
    for line in results.read_text().splitlines():
        record = json.loads(line)
        model = Path(record["model"])
        variant, run = model.parent.name, model.parent.parent.name
        if record.get("error"):
            table.append({"run": run, "variant": variant, "abs_triggers": f"error: {record['error'][:60]}"})
            continue
        target = planted_target(model)
        triggers = record["triggers"]
        strong = [t for t in triggers if t["asr"] >= threshold - ASR_TOLERANCE]
        found = [t for t in strong if t["target"] == target]
        table.append(
            {
                "run": run,
                "variant": variant,
                "abs_triggers": len(triggers),
                "flagged_abs": bool(strong),
                "flagged_abs_exray": any(not t["pruned"] for t in strong),
                "target_found": len(found),
                "target_kept_by_exray": sum(not t["pruned"] for t in found),
                "probability": round(record["probability"], 4),
            }
        )
    return sorted(table, key=lambda r: (r["run"], r["variant"]))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("results", type=Path, help="the exray scan JSONL of the study's models")
    parser.add_argument("--threshold", type=float, default=Calibration().threshold)
    parser.add_argument("--csv", type=Path, default=None)
    args = parser.parse_args(argv)
    table = rows(args.results, args.threshold)
    print("| run | variant | ABS triggers | flagged: ABS / ABS + EX-RAY | target found / kept |")
    print("|---|---|---|---|---|")
    for r in table:
        if "flagged_abs" not in r:
            print(f"| {r['run']} | {r['variant']} | {r['abs_triggers']} | | |")
            continue
        flags = f"{'yes' if r['flagged_abs'] else 'no'} / {'yes' if r['flagged_abs_exray'] else 'no'}"
        print(
            f"| {r['run']} | {r['variant']} | {r['abs_triggers']} | {flags} | "
            f"{r['target_found']} / {r['target_kept_by_exray']} |"
        )
    if args.csv:
        with args.csv.open("w", newline="") as handle:
            writer = csv.DictWriter(handle, FIELDS)
            writer.writeheader()
            writer.writerows(table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
