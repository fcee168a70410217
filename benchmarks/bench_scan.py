"""Seconds per model for the upstream scanners, per stage, and triggers per model, on a zoo.

Builds (or reuses, via ``exray.zoo.cached_build``) the zoo of a spec — by default ``zoos/demo.yaml``, else
``zoos/tiny.yaml`` — and scans every model with ABS (stages: profiling, stimulation, probe, inversion,
validation) and with Neural Cleanse (label-specific; ``--nc-universal`` adds the universal variant).
Prints one row per model and the mean seconds per model; the target for ABS + EX-RAY is ≤ 60 s per 32×32
model on 2 cores, so ABS itself should stay well under ~40 s. Run it on an otherwise idle machine
(``flock /tmp/exray-cpu.lock`` on a shared one).

    .venv/bin/python benchmarks/bench_scan.py [--spec zoos/demo.yaml] [--models 4] [--no-nc] [--threads 2]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

import exray
from exray.scanners import get_scanner
from exray.zoo import cached_build, read_metadata

ABS_STAGES = ("profiling", "stimulation", "probe", "inversion", "validation")
ROOT = Path(__file__).resolve().parent.parent


def default_spec() -> Path:
    demo = ROOT / "zoos" / "demo.yaml"
    return demo if demo.exists() else ROOT / "zoos" / "tiny.yaml"


def scan_model(directory: Path, scanners: dict[str, object], seed: int) -> dict:
    model = exray.load_model(directory)
    examples = exray.load_examples(directory)
    row: dict = {}
    for name, scanner in scanners.items():
        start = time.perf_counter()
        result = scanner.scan(model, examples, seed=seed)
        row[name] = {
            "seconds": time.perf_counter() - start,
            "timings": result.timings,
            "triggers": len(result.triggers),
            "confirmed": sum(t.asr > 0.99 for t in result.triggers),
            "best": max(
                ((t.asr, t.victim, t.target, t.kind) for t in result.triggers), default=(0.0, -1, -1, "-")
            ),
        }
    return row


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

    print(f"zoo {zoo} ({spec.name}), {len(rows)} models, {args.threads} threads, torch {torch.__version__}")
    header = f"{'model':<14} {'arch':<12} {'truth':<14}" + "".join(f" {s[:6]:>7}" for s in ABS_STAGES)
    header += f" {'ABS s':>7} {'trig':>4} {'best (asr v→t kind)':<24}"
    header += "".join(f" {n + ' s':>8} {'trig':>4}" for n in scanners if n != "abs")
    print(header)
    results = []
    for meta in rows:
        row = scan_model(zoo / meta["name"], scanners, args.seed)
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
        line += "".join(f" {row[n]['seconds']:>8.2f} {row[n]['triggers']:>4}" for n in scanners if n != "abs")
        print(line, flush=True)

    print("mean seconds per model:")
    for name in scanners:
        seconds = [r[name]["seconds"] for r in results]
        triggers = [r[name]["triggers"] for r in results]
        stages = {
            s: sum(r[name]["timings"].get(s, 0.0) for r in results) / len(results)
            for s in results[0][name]["timings"]
        }
        staged = ", ".join(f"{s} {v:.2f}" for s, v in stages.items())
        mean, per_model = sum(seconds) / len(seconds), sum(triggers) / len(triggers)
        print(f"  {name:<13} {mean:6.2f} s  ({staged}); triggers/model {per_model:.1f}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=1, default=str))


if __name__ == "__main__":
    main()
