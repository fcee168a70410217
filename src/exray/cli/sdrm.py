"""``exray sdrm study SPEC --out DIR``: train RBT and SDRM backdoored models and compare the detectors."""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

from exray.cli.common import add_device_flag, add_output_flags, thread_count
from exray.studies.sdrm import load_spec, run_study, select_runs, write_report
from exray.utils import set_thread_budget


def add_parser(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "sdrm",
        help="SDRM: MMD-regularised backdoors vs difference-based detectors",
        description="The SDRM / ML-MMDR attack and the detectors it escapes (spec §6).",
    )
    commands = parser.add_subparsers(dest="sdrm_command", required=True, metavar="SUBCOMMAND")
    study = commands.add_parser(
        "study",
        help="run a study spec: RBT vs SDRM models, distances, detector F1 table",
        description=(
            "For each configured (data, architecture, attack), train the regular and the SDRM backdoored "
            "model with the same seed and data, measure clean accuracy, ASR, per-level distances and the "
            "detectors, and write sdrm-table.md/.csv, sdrm-results.json and sdrm-distances.png into DIR. "
            "Finished models are cached in DIR: rerunning resumes."
        ),
    )
    study.add_argument("spec", type=Path, help="study spec (.yaml or .json)")
    study.add_argument("--out", type=Path, required=True, help="output and cache directory")
    study.add_argument(
        "--runs",
        nargs="+",
        metavar="DATA/ARCH/ATTACK",
        help="only the runs matching these shell-style patterns (e.g. 'signs/vgg/*'); cached models are "
        "shared with the full study, the tables go to OUT/part-<patterns>",
    )
    study.add_argument(
        "--threads", type=thread_count, help="torch intra-op threads (default: torch's choice)"
    )
    add_device_flag(study, default="cpu")
    add_output_flags(study)
    study.set_defaults(run=run_study_command)


def part_name(patterns: list[str]) -> str:
    """The report folder of a part of a study, named after its ``--runs`` patterns."""
    return "part-" + "+".join(re.sub(r"[^A-Za-z0-9]+", "-", p).strip("-") or "all" for p in patterns)[:80]


def run_study_command(args: argparse.Namespace) -> int:
    spec = select_runs(load_spec(args.spec), args.runs or ())
    set_thread_budget(args.threads)
    results = run_study(spec, args.out, progress=not args.quiet, device=args.device)
    # a part's tables go beside the whole study's, never over them (the models are shared: args.out/runs)
    report = args.out / part_name(args.runs) if args.runs else args.out
    report.mkdir(parents=True, exist_ok=True)
    paths = write_report(results, report)
    if args.json:
        print(json.dumps({"files": {k: str(v) for k, v in paths.items()}, **results}))
    else:
        print(paths["markdown"].read_text(), end="")
        cached = sum(r["cached"] for r in results["records"])
        print(f"\n{len(results['records'])} models ({cached} from the cache) in {results['seconds']:.0f} s")
        print("written: " + ", ".join(str(p) for p in paths.values()))
    return 0
