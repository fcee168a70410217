"""Seconds per model for the upstream scanners and EX-RAY, per stage, and triggers per model, on a zoo.

Builds (or reuses, via ``exray.zoo.cached_build``) the zoo of a spec — by default ``zoos/demo.yaml``, else
``zoos/tiny.yaml`` — and scans every model with ABS (stages: profiling, stimulation, probe, inversion,
validation), then judges ABS's triggers with EX-RAY (``exray.scan`` with those triggers: every M1/M2
problem of the model in one batched pass; the demo's mask settings, bf16 and early stopping, unless
``--precision``/``--patience`` say otherwise), and scans with Neural Cleanse (label-specific;
``--nc-universal`` adds the universal variant). Prints one row per model and the mean seconds per model,
and ABS + EX-RAY against the target of ≤ 60 s per 32×32 model on 2 cores. Run it on an otherwise idle
machine (``flock /tmp/exray-cpu.lock`` on a shared one).

    .venv/bin/python benchmarks/bench_scan.py [--spec zoos/demo.yaml] [--models 4] [--no-nc] [--threads 2]
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace
from pathlib import Path

import torch

import exray
from exray.differencing import MaskConfig
from exray.evaluation.demo import DEMO_LAYER, DEMO_MASKS
from exray.scanners import get_scanner
from exray.zoo import cached_build, read_metadata

ABS_STAGES = ("profiling", "stimulation", "probe", "inversion", "validation")
ROOT = Path(__file__).resolve().parent.parent
TARGET_SECONDS = 60.0


def default_spec() -> Path:
    demo = ROOT / "zoos" / "demo.yaml"
    return demo if demo.exists() else ROOT / "zoos" / "tiny.yaml"


def scan_model(
    directory: Path, scanners: dict[str, object], seed: int, layer: str, masks: MaskConfig
) -> dict:
    model = exray.load_model(directory)
    examples = exray.load_examples(directory)
    row: dict = {}
    for name, scanner in scanners.items():
        start = time.perf_counter()
        result = scanner.scan(model, examples, seed=seed)
        seconds = time.perf_counter() - start
        if name == "abs":
            row["exray"] = judge(model, examples, result.triggers, seed, layer, masks)
        row[name] = {
            "seconds": seconds,
            "timings": result.timings,
            "triggers": len(result.triggers),
            "confirmed": sum(t.asr > 0.99 for t in result.triggers),
            "best": max(
                ((t.asr, t.victim, t.target, t.kind) for t in result.triggers), default=(0.0, -1, -1, "-")
            ),
        }
    return row


def judge(
    model: torch.nn.Module, examples: dict, triggers: list, seed: int, layer: str, masks: MaskConfig
) -> dict:
    """EX-RAY on ABS's triggers, as ``exray scan`` runs it after the scanner."""
    start = time.perf_counter()
    result = exray.scan(model, examples, triggers=triggers, seed=seed, layer=layer, mask_config=masks)
    judged = [t for t in result.triggers if t.verdict is not None]
    return {
        "seconds": time.perf_counter() - start,
        "timings": {"exray": result.timings.get("exray", 0.0)},
        "triggers": len(judged),
        "kept": sum(not t.verdict.natural for t in judged),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--spec", type=Path, default=None, help="zoo spec (default: zoos/demo.yaml or tiny.yaml)"
    )
    parser.add_argument("--cache", type=Path, default=None, help="zoo cache root (default: $EXRAY_CACHE)")
    parser.add_argument("--models", type=int, default=None, help="scan only the first N models")
    parser.add_argument("--no-nc", action="store_true", help="skip Neural Cleanse")
    parser.add_argument("--nc-universal", action="store_true", help="also run universal Neural Cleanse")
    parser.add_argument(
        "--layer", default=DEMO_LAYER, help=f"EX-RAY's layer (default: the demo's, {DEMO_LAYER})"
    )
    parser.add_argument(
        "--precision",
        choices=("fp32", "bf16"),
        default=DEMO_MASKS.precision,
        help="EX-RAY's suffix precision",
    )
    parser.add_argument(
        "--patience", type=int, default=DEMO_MASKS.patience, help="EX-RAY's early stopping (0: none)"
    )
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, default=None, help="also write the rows to this JSON file")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    spec = args.spec or default_spec()
    zoo = cached_build(spec, args.cache, progress=True)
    rows = read_metadata(zoo)[: args.models]
    scanners: dict[str, object] = {"abs": get_scanner("abs")}
    if not args.no_nc:
        scanners["nc"] = get_scanner("nc")
    if args.nc_universal:
        scanners["nc_universal"] = get_scanner("nc_universal")

    masks = replace(DEMO_MASKS, precision=args.precision, patience=args.patience or None)
    print(f"zoo {zoo} ({spec.name}), {len(rows)} models, {args.threads} threads, torch {torch.__version__}")
    print(f"EX-RAY at {args.layer}, masks {args.precision}, patience {masks.patience}")
    header = f"{'model':<14} {'arch':<12} {'truth':<14}" + "".join(f" {s[:6]:>7}" for s in ABS_STAGES)
    header += (
        f" {'ABS s':>7} {'trig':>4} {'best (asr v→t kind)':<24} {'EX-RAY s':>8} {'judged':>6} {'kept':>4}"
    )
    header += "".join(f" {n + ' s':>8} {'trig':>4}" for n in scanners if n != "abs")
    print(header)
    results = []
    for meta in rows:
        row = scan_model(zoo / meta["name"], scanners, args.seed, args.layer, masks)
        results.append({"model": meta["name"], "metadata": meta, **row})
        truth = (
            "clean"
            if meta["poisoned"] in ("False", "false", "0")
            else f"{meta['trigger_type']}→{meta['target_class']}"
        )
        abs_row = row["abs"]
        asr, victim, target, kind = abs_row["best"]
        line = f"{meta['name']:<14} {meta['architecture']:<12} {truth:<14}"
        line += "".join(f" {abs_row['timings'].get(s, 0.0):>7.2f}" for s in ABS_STAGES)
        best = f"{asr:.2f} {victim}→{target} {kind}"
        line += f" {abs_row['seconds']:>7.2f} {abs_row['triggers']:>4} {best:<24}"
        ex = row["exray"]
        line += f" {ex['seconds']:>8.2f} {ex['triggers']:>6} {ex['kept']:>4}"
        line += "".join(f" {row[n]['seconds']:>8.2f} {row[n]['triggers']:>4}" for n in scanners if n != "abs")
        print(line, flush=True)

    print("mean seconds per model:")
    for name in ("abs", "exray", *(n for n in scanners if n != "abs")):
        seconds = [r[name]["seconds"] for r in results]
        triggers = [r[name]["triggers"] for r in results]
        stages = {
            s: sum(r[name]["timings"].get(s, 0.0) for r in results) / len(results)
            for s in results[0][name]["timings"]
        }
        staged = ", ".join(f"{s} {v:.2f}" for s, v in stages.items())
        mean, per_model = sum(seconds) / len(seconds), sum(triggers) / len(triggers)
        print(f"  {name:<13} {mean:6.2f} s  ({staged}); triggers/model {per_model:.1f}")
    both = [r["abs"]["seconds"] + r["exray"]["seconds"] for r in results]
    worst = max(both)
    print(
        f"ABS + EX-RAY: {sum(both) / len(both):.1f} s per model (slowest {worst:.1f} s); "
        f"target <= {TARGET_SECONDS:.0f} s: {'met' if worst <= TARGET_SECONDS else 'not met'} "
        f"(mean {sum(both) / len(both) / TARGET_SECONDS:.2f}x the target)"
    )
    if args.json:
        args.json.write_text(json.dumps(results, indent=1, default=str))


if __name__ == "__main__":
    main()
