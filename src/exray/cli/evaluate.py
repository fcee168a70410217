"""``exray evaluate``: the scanner alone vs every refinement method on a labelled zoo (design §3)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from exray.cli.common import (
    TRUST_PICKLE_HELP,
    add_device_flag,
    add_output_flags,
    add_refinement_flags,
    add_scanner_flags,
    mask_config,
    scanner_options,
    thread_count,
)
from exray.evaluation import EvaluationConfig, evaluate_zoo
from exray.pipeline import Calibration
from exray.refinement import list_methods


def add_parser(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "evaluate",
        help="compare the scanner, EX-RAY and the paper's baselines on a labelled zoo",
        description=(
            "Scan every model of a zoo once with the upstream scanner, judge the same triggers with every "
            "refinement method (EX-RAY, its one-sided variants and the paper's baselines), and print a table "
            "like the paper's Table 1 per trigger type and overall: TP, FP, FN, TN, accuracy, ROC-AUC, "
            "cross-entropy, FP reduction and TP loss relative to the scanner alone. Scans and scores are "
            "cached in the output directory, so a re-run only recomputes the table. Writes table.csv, "
            "evaluation.json, roc.png and index.html."
        ),
    )
    parser.add_argument("zoo_dir", type=Path, help="a zoo: model directories with ground truth")
    parser.add_argument(
        "--methods",
        nargs="+",
        choices=list_methods(),
        default=list_methods(),
        metavar="METHOD",
        help=f"rows after the scanner's (default: all, in the paper's order): {', '.join(list_methods())}",
    )
    parser.add_argument(
        "--scanner", choices=("abs", "nc"), default="abs", help="upstream scanner (nc: the Table-3 variant)"
    )
    parser.add_argument(
        "--groups",
        nargs="+",
        metavar="GROUP",
        help="evaluate only the clean models and the trojaned models of these trigger groups "
        "(Table 3: --scanner nc --groups polygon; default: every model)",
    )
    parser.add_argument(
        "--out", type=Path, help="output directory (default: ./evaluation-<zoo name>-<scanner>)"
    )
    parser.add_argument("--calibration", type=Path, help="calibration JSON from `exray calibrate`")
    parser.add_argument(
        "--rules-from",
        type=Path,
        metavar="ZOO_DIR",
        help="fit the score baselines' thresholds and the random forest on this separate labelled zoo "
        "(evaluated with the same settings into OUT/rules-from, cached) and apply them here, out of "
        "sample (default: the paper's protocol, the best separation on ZOO itself)",
    )
    parser.add_argument(
        "--min-asr",
        type=float,
        help="judge triggers whose ASR reaches this (default: the calibration's threshold, so that every "
        "trigger that can flag a model is judged, as in the official submissions)",
    )
    parser.add_argument("--trust-pickle", action="store_true", help=TRUST_PICKLE_HELP)
    add_device_flag(parser)
    parser.add_argument(
        "--workers",
        type=thread_count,
        default=1,
        help="models evaluated at once, each in its own process on the cores split between them "
        "(default 1: in this process)",
    )
    group = parser.add_argument_group("EX-RAY and the baselines")
    add_refinement_flags(group)
    group.add_argument("--seed", type=int, default=0, help="random seed (scans, masks, forest, split)")
    add_scanner_flags(parser, layer=False)  # the scanner stays at its layer: every method judges its triggers
    add_output_flags(parser)
    parser.set_defaults(run=run)


def config_from(args: argparse.Namespace) -> EvaluationConfig:
    return EvaluationConfig(
        methods=tuple(dict.fromkeys(args.methods)),
        scanner=args.scanner,
        scanner_options=scanner_options(args),
        seed=args.seed,
        layer=args.layer,
        policy=args.policy,
        mask_config=mask_config(args),
        calibration=Calibration.load(args.calibration) if args.calibration else Calibration(),
        calibration_source=f"from {args.calibration}" if args.calibration else "default",
        min_asr=args.min_asr,
        trust_pickle=args.trust_pickle,
        groups=None if args.groups is None else tuple(dict.fromkeys(args.groups)),
        device=args.device,
    )


def run(args: argparse.Namespace) -> int:
    config = config_from(args)
    out = args.out or Path(f"evaluation-{args.zoo_dir.resolve().name}-{config.scanner}")
    reference, pool = None, {"progress": not args.quiet, "workers": args.workers}
    if args.rules_from is not None:
        reference = evaluate_zoo(args.rules_from, out / "rules-from", config=config, **pool)
    result = evaluate_zoo(args.zoo_dir, out, config=config, rules_from=reference, **pool)
    if args.json:
        summary = {
            "zoo": result.zoo,
            "calibration": result.calibration_note,
            "thresholds": result.thresholds,
            "rows": [r.to_dict() for r in result.rows],
            "errors": result.errors,
            "files": {k: str(v) for k, v in result.files.items()},
        }
        print(json.dumps(summary))
    else:
        print(result.table())
        print(f"\nreport: {result.files['html']}", file=sys.stderr)
    scanned = [m for m in result.models if m.triggers is not None]
    return 0 if scanned else 1
