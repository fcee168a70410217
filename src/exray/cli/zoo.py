"""``exray zoo build SPEC --out DIR [--workers N]``: train a model population (design §3)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from exray.cli.common import add_device_flag, add_output_flags, thread_count
from exray.zoo import BuildSummary, build_zoo, default_workers, load_spec


def add_parser(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("zoo", help="build model populations", description="Build model populations.")
    verbs = parser.add_subparsers(dest="zoo_command", required=True, metavar="VERB")
    build = verbs.add_parser(
        "build",
        help="train the models of a zoo spec (resumable)",
        description=(
            "Train every model of a zoo spec (JSON or YAML) into OUT: one TrojAI-style model directory per "
            "model plus METADATA.csv. Resumable: finished models are reused, a killed build continues. "
            "Exit code 0 when every model meets the quality bar, 1 otherwise."
        ),
    )
    build.add_argument("spec", type=Path, help="zoo spec file (.json, .yaml or .yml)")
    build.add_argument("--out", type=Path, required=True, help="output directory")
    build.add_argument(
        "--workers",
        type=thread_count,
        default=default_workers(),
        help="models trained in parallel processes (default: one per core)",
    )
    build.add_argument(
        "--train-threads",
        type=thread_count,
        default=1,
        help="intra-op threads each model trains on (default 1: the same weights whoever builds the zoo "
        "on this machine; another count, like another CPU, trains other weights)",
    )
    add_device_flag(build, default="cpu")
    build.add_argument(
        "--rebuild",
        action="store_true",
        help="retrain finished models whose settings the spec changed (default: refuse)",
    )
    add_output_flags(build)
    build.set_defaults(run=run_build)


def run_build(args: argparse.Namespace) -> int:
    spec = load_spec(args.spec)
    summary = build_zoo(
        spec,
        args.out,
        workers=args.workers,
        progress=not args.quiet,
        rebuild=args.rebuild,
        train_threads=args.train_threads,
        device=args.device,
    )
    if args.json:
        print(json.dumps(summary.to_dict()))
    else:
        print(format_summary(summary))
    return 0 if summary.ok else 1


def format_summary(summary: BuildSummary) -> str:
    """A table of the models and a one-line verdict."""
    columns = ("model", 12), ("status", 14), ("poisoned", 8), ("architecture", 14), ("trigger", 18)
    header = (
        " ".join(f"{name:<{width}}" for name, width in columns) + f" {'src→tgt':<12} {'acc':>6} {'asr':>6}"
    )
    lines = [header, "-" * len(header)]
    for r in summary.records:
        link = "" if not r.target_class else f"{r.source_classes}→{r.target_class}"
        acc = "" if r.clean_accuracy is None else f"{r.clean_accuracy:.3f}"
        asr = "" if r.attack_success_rate is None else f"{r.attack_success_rate:.3f}"
        lines.append(
            f"{r.name:<12} {r.status:<14} {r.poisoned!s:<8} {r.architecture:<14} {r.trigger_type:<18} "
            f"{link:<12} {acc:>6} {asr:>6}"
        )
        if r.error:
            lines.append(f"    error: {r.error}")
    lines.append(
        f"{summary.spec_name}: {len(summary.records)} models in {summary.out} — built {len(summary.built)}, "
        f"reused {len(summary.reused)}, rebuilt {len(summary.rebuilt)}, below the quality bar "
        f"{len(summary.failed_quality)}, errors {len(summary.errors)} ({summary.seconds:.0f} s)"
    )
    return "\n".join(lines)
