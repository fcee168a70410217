"""Does EX-RAY's premise hold on a zoo, and at which layer? Verdicts on triggers known by construction.

EX-RAY (paper §3) calls a trigger natural when the feature maps that flip victim V to V+trigger (M2) lie
inside those that separate clean V from clean T (M1). Whether that holds depends on the model and the
layer, independently of any trigger-inversion scanner. This script judges, at every requested layer, two
kinds of trigger whose answer is known by construction (``exray.evaluation.known``), so no scanner error
can blur the picture: each trojaned model's **planted** trigger stamped on its own example scenes (should
be judged *injected*) and **glyph swaps** between a confusion pair (should be judged *natural*).

Prints, per layer, how many planted triggers were judged injected and how many glyph swaps natural, then
one row per trigger with the overlaps (I1, I2) and each mask's share of the layer's channels (an M1
that covers most channels contains any M2, whatever the trigger). A layer where both counts are high is
one where EX-RAY can work on this population; ``exray scan --layer`` takes it. Run it on an otherwise
idle machine.

    .venv/bin/python benchmarks/premise_by_layer.py [--zoo DIR | --spec zoos/tiny.yaml] \
        [--layers block:0,block:1,block:middle,block:-2,block:-1] [--models N] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

import exray
from exray.differencing import MaskConfig
from exray.differencing.compare import compare_triggers
from exray.differencing.policies import resolve_policy
from exray.evaluation.demo import DEMO_MASKS
from exray.evaluation.known import known_triggers
from exray.utils import versions
from exray.zoo import ZOO_FILE, cached_build, designs, parse_spec

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_LAYERS = "block:0,block:1,block:middle,block:-2,block:-1"
#: Decision rules re-applied to the same masks (the verdict itself uses the library default, "official").
POLICIES = ("official", "paper", "r3", "r2")


def natural_under(verdict, policy: str) -> bool:
    """The verdict ``policy`` gives on the masks and cross-checks of ``verdict`` (``Verdict.under``)."""
    return verdict.under(resolve_policy(policy, verdict.kind)).natural


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--zoo", type=Path, help="a built zoo directory (its zoo.json holds the spec)")
    where.add_argument(
        "--spec", type=Path, default=ROOT / "zoos" / "tiny.yaml", help="build or reuse via the cache"
    )
    parser.add_argument("--layers", default=DEFAULT_LAYERS, help="comma-separated layer selectors")
    parser.add_argument("--precision", choices=("fp32", "bf16"), default=DEMO_MASKS.precision)
    parser.add_argument("--patience", type=int, default=DEMO_MASKS.patience)
    parser.add_argument("--models", type=int, help="judge only the first N models of the zoo")
    parser.add_argument("--seed", type=int, default=0, help="mask-optimisation seed")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--workers", type=int, default=1, help="parallel model builds (one thread each)")
    parser.add_argument("--json", type=Path, help="also write every verdict here")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    zoo = args.zoo if args.zoo is not None else cached_build(args.spec, workers=args.workers, progress=True)
    spec = parse_spec(json.loads((zoo / ZOO_FILE).read_text())["spec"])
    masks = replace(MaskConfig(), precision=args.precision, patience=args.patience)
    layers = [layer.strip() for layer in args.layers.split(",") if layer.strip()]

    rows = []
    for design in designs(spec)[: args.models]:
        model = exray.load_model(zoo / design.name)
        cases = known_triggers(zoo, design.name)
        for layer in layers:
            verdicts = compare_triggers(
                model, [known.case for known in cases], layer=layer, config=masks, seed=args.seed
            )
            for known, verdict in zip(cases, verdicts):
                rows.append(
                    {
                        "model": design.name,
                        "architecture": design.architecture.name,
                        "layer": layer,
                        "trigger": known.description,
                        "natural_by_construction": known.natural,
                        "natural": verdict.natural,
                        "overlap": [round(v, 3) for v in verdict.overlap],
                        "mask_share": [round(share, 3) for share in verdict.coverage],
                        "degenerate": list(verdict.degenerate),
                        "reasons": verdict.reasons,
                        "natural_under": {p: natural_under(verdict, p) for p in POLICIES},
                        "cross_accuracy": {k: round(v, 3) for k, v in verdict.cross_accuracy.items()},
                        "m1": [round(float(v), 6) for v in verdict.m1.flatten()],
                        "m2": [round(float(v), 6) for v in verdict.m2.flatten()],
                    }
                )
        print(f"{design.name} ({design.architecture.name}): {len(cases)} known triggers judged", flush=True)
        write_record(args, zoo, layers, masks, rows, complete=False)  # a killed run keeps what it judged

    print(
        f"\n{'layer':<14} {'planted judged injected':>24} {'glyph swaps judged natural':>27}"
        f" {'median |M1|':>12}"
    )
    for layer in layers:
        planted = [r for r in rows if r["layer"] == layer and not r["natural_by_construction"]]
        swaps = [r for r in rows if r["layer"] == layer and r["natural_by_construction"]]
        injected = sum(not r["natural"] for r in planted)
        natural = sum(r["natural"] for r in swaps)
        share = float(np.median([r["mask_share"][0] for r in rows if r["layer"] == layer]))
        print(
            f"{layer:<14} {injected:>18} of {len(planted):<3} {natural:>21} of {len(swaps):<3} {share:>12.0%}"
        )
    print("\nThe same masks under each decision rule (planted injected / swaps natural):")
    print(f"{'layer':<14} " + " ".join(f"{p:>12}" for p in POLICIES))
    for layer in layers:
        planted = [r for r in rows if r["layer"] == layer and not r["natural_by_construction"]]
        swaps = [r for r in rows if r["layer"] == layer and r["natural_by_construction"]]
        cells = []
        for p in POLICIES:
            injected = sum(not r["natural_under"][p] for r in planted)
            natural = sum(r["natural_under"][p] for r in swaps)
            cells.append(f"{injected}/{len(planted)} {natural}/{len(swaps)}")
        print(f"{layer:<14} " + " ".join(f"{c:>12}" for c in cells))
    print()
    for r in rows:
        verdict = "natural " if r["natural"] else "injected"
        i1, i2 = r["overlap"]
        s1, s2 = r["mask_share"]
        print(
            f"{r['model']} {r['layer']:<13} {r['trigger']:<26} {verdict} I1={i1:.2f} I2={i2:.2f}"
            f"  |M1|={s1:.0%} |M2|={s2:.0%} of the channels"
        )
    if args.json is not None:
        write_record(args, zoo, layers, masks, rows, complete=True)
        print(f"\nverdicts: {args.json}")


def write_record(
    args, zoo: Path, layers: list[str], masks: MaskConfig, rows: list[dict], complete: bool
) -> None:
    """Write every verdict so far to ``--json`` (``complete`` false while models remain)."""
    if args.json is None:
        return
    record = {
        "zoo": str(zoo),
        "layers": layers,
        "masks": masks.to_dict(),
        "seed": args.seed,
        "complete": complete,
        "rows": rows,
        "versions": versions(),
    }
    args.json.write_text(json.dumps(record, indent=1))


if __name__ == "__main__":
    main()
