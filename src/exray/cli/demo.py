"""``exray demo``: the main job on an embedded default — ABS alone vs ABS + EX-RAY on the demo zoo
(:mod:`exray.evaluation.demo`).

Builds (or reuses from the cache, see :func:`exray.zoo.cached_build`) the population of ``zoos/demo.yaml``
— 10 population-v2 models at 32×32 (issue 16), half of them trojaned with polygon or Instagram-filter
triggers, some with natural-confusion class pairs — scans every model once with ABS, judges the same
triggers with EX-RAY (at ``block:-2``, round-2 rule) and the cheap baselines, and prints a Table-1-style
comparison and the path of the HTML report. Everything is cached: a second run only redraws the table.

``--analytic`` instead runs the seconds-long demonstration on a hand-wired model whose feature maps are
colour detectors (red = class 0, green = class 1, and a planted magenta detector wired to class 1): a
magenta patch is an injected trigger, a green patch — class 1's own feature — a natural one.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from exray.cli.common import add_device_flag, add_output_flags, thread_count
from exray.differencing.policies import POLICY_NAMES
from exray.evaluation.demo import (
    DEMO_LAYER,
    DEMO_METHODS,
    DEMO_POLICY,
    SHIPPED_ZOOS,
    analytic_demo,
    run_demo,
    write_analytic_report,
)
from exray.models.analytic import COLOURS
from exray.zoo import default_workers


def add_parser(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "demo", help="ABS vs ABS + EX-RAY on the demo zoo (built on first use)", description=__doc__
    )
    parser.add_argument(
        "--spec", type=Path, default=SHIPPED_ZOOS / "demo.yaml", help="zoo spec (default: zoos/demo.yaml)"
    )
    parser.add_argument(
        "--out", type=Path, default=Path("build/demo"), help="evaluation directory (default: build/demo)"
    )
    parser.add_argument(
        "--methods", nargs="+", default=list(DEMO_METHODS), metavar="METHOD", help="rows after ABS's"
    )
    parser.add_argument(
        "--layer", default=DEMO_LAYER, help=f"EX-RAY's layer (default {DEMO_LAYER}; see docs/results.md)"
    )
    parser.add_argument(
        "--policy",
        default=DEMO_POLICY,
        choices=POLICY_NAMES,
        help=f"EX-RAY's decision rule (default {DEMO_POLICY}; see docs/results.md)",
    )
    parser.add_argument(
        "--workers",
        type=thread_count,
        default=default_workers(),
        help="parallel model builds (default: one per core)",
    )
    parser.add_argument(
        "--train-threads",
        type=thread_count,
        default=1,
        help="intra-op threads each zoo model trains on (default 1; another count trains other weights)",
    )
    parser.add_argument(
        "--calibration",
        type=Path,
        help="calibration JSON (default: the shipped one, fitted on zoos/demo-calib.yaml, for the shipped "
        "demo spec; the default constants for another spec)",
    )
    add_device_flag(parser, default="cpu")
    parser.add_argument("--analytic", action="store_true", help="the seconds-long hand-wired demonstration")
    parser.add_argument("--seed", type=int, default=0, help="random seed")
    add_output_flags(parser)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    if args.analytic:
        return run_analytic(args)
    if not args.quiet:
        print(f"zoo: {args.spec} (built on first use, then cached)", file=sys.stderr)
    result = run_demo(
        args.spec, args.out, methods=tuple(args.methods), seed=args.seed, layer=args.layer,
        policy=args.policy, calibration=args.calibration, device=args.device, workers=args.workers,
        train_threads=args.train_threads, progress=not args.quiet,
    )  # fmt: skip
    if args.json:
        print(json.dumps({"rows": [r.to_dict() for r in result.rows], "report": str(result.files["html"])}))
    else:
        print(result.table())
        print(f"\nHTML report: {result.files['html'].resolve()}")
    return 0 if not result.errors else 1


def run_analytic(args: argparse.Namespace) -> int:
    verdicts, expected = analytic_demo(args.seed, progress=not args.quiet)
    report = write_analytic_report(verdicts, args.out)
    if args.json:
        print(json.dumps(report))
    else:
        channels = list(COLOURS)
        for name, verdict in verdicts.items():
            print(f"\n{name}\n  {verdict.summary()}")
            for label, mask in (("M1 (V vs T)  ", verdict.m1), ("M2 (V vs V+t)", verdict.m2)):
                top = ", ".join(
                    f"{channels[i]} {float(mask[i]):.2f}" for i in mask.argsort(descending=True)[:3]
                )
                print(f"  {label}: {top}")
    return 0 if all(verdicts[name].natural == expected[name] for name in verdicts) else 1
