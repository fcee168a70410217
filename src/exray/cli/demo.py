"""``exray demo``: a self-contained demonstration of EX-RAY on a hand-wired model.

The model's feature maps are colour detectors (red = class 0, green = class 1, and a planted magenta
detector wired to class 1). A magenta patch is an injected trigger; a green patch — class 1's own
feature — is a natural one. EX-RAY must tell them apart.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from exray.cli.common import add_output_flags
from exray.differencing import TriggerCase, compare_triggers
from exray.models import build_model
from exray.models.analytic import COLOURS, symbol_images


def add_parser(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("demo", help="run the built-in demonstration", description=__doc__)
    parser.add_argument("--out", type=Path, help="also write the verdicts as JSON into this directory")
    parser.add_argument("--seed", type=int, default=0, help="random seed")
    add_output_flags(parser)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    votes = [{"red": 2}, {"green": 2.5, "magenta": 3}, {"blue": 2}]
    model = build_model("colour_detectors", 3, votes=votes, bias=[0, 0.1, 0.05])
    victim, target = symbol_images("red", 10, seed=1), symbol_images("green", 10, seed=2)
    triggers = {
        "injected (magenta patch, planted)": symbol_images("red", 10, seed=1, patch="magenta"),
        "natural (green patch, class 1's own feature)": symbol_images("red", 10, seed=1, patch="green"),
    }
    cases = [TriggerCase(victim, target, stamped, 0, 1) for stamped in triggers.values()]
    verdicts = compare_triggers(model, cases, seed=args.seed, progress=not args.quiet)
    channels = list(COLOURS)
    report = []
    for name, verdict in zip(triggers, verdicts):
        report.append({"trigger": name, **verdict.to_dict()})
        if not args.json:
            print(f"\n{name}\n  {verdict.summary()}")
            for label, mask in (("M1 (V vs T)  ", verdict.m1), ("M2 (V vs V+t)", verdict.m2)):
                top = ", ".join(
                    f"{channels[i]} {float(mask[i]):.2f}" for i in mask.argsort(descending=True)[:3]
                )
                print(f"  {label}: {top}")
    if args.json:
        print(json.dumps(report))
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "demo-verdicts.json").write_text(json.dumps(report, indent=2) + "\n")
    expected = [False, True]
    return 0 if [v.natural for v in verdicts] == expected else 1
