"""``exray scan``: scan model directories, one JSON line per model (design §3)."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from exray.cli.common import (
    TRUST_PICKLE_HELP,
    add_device_flag,
    add_exray_flags,
    add_output_flags,
    add_scanner_flags,
    mask_config,
    scanner_options,
)
from exray.errors import ConfigError
from exray.pipeline import Calibration, ModelBudget, ScanOptions, read_results, scan_many
from exray.pipeline.ray_backend import RayBackend
from exray.pipeline.scan import VICTIM_RULES
from exray.pipeline.shards import Shard, parse_shard, shard_from_env
from exray.utils import available_cores


def add_parser(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "scan",
        help="scan models for backdoors (scanner + EX-RAY)",
        description=(
            "Scan each model directory with an upstream trigger-inversion scanner, prune natural triggers "
            "with EX-RAY, and write one JSON line per model with its probability of being trojaned. Models "
            "already in the results file are skipped, so an interrupted scan resumes; a model that fails is "
            "recorded with its error and the scan goes on."
        ),
    )
    parser.add_argument("model_dirs", nargs="+", type=Path, help="model directories")
    parser.add_argument("--scanner", choices=("abs", "nc"), default="abs", help="upstream scanner")
    parser.add_argument("--no-refine", action="store_true", help="report the scanner alone (no EX-RAY)")
    parser.add_argument(
        "--victims",
        choices=VICTIM_RULES,
        default="found",
        help="judge each trigger with the scanner's victim class (the paper) or with every class it flips, "
        "keeping it when most of those verdicts say injected",
    )
    parser.add_argument("--out", type=Path, default=Path("results.jsonl"), help="JSON-lines results file")
    parser.add_argument("--report", type=Path, help="write an HTML report per model and an index into DIR")
    parser.add_argument("--workers", type=int, default=1, help="models scanned in parallel (share the cores)")
    parser.add_argument(
        "--backend",
        choices=("local", "ray"),
        default="local",
        help="local: a pool of --workers processes on this machine; ray: one Ray task per model on a local "
        "Ray instance or the cluster of --ray-address (pip install 'exray[ray]')",
    )
    parser.add_argument(
        "--ray-address",
        help="the Ray cluster to run on (e.g. auto or ray://head:10001; default: $RAY_ADDRESS, else a local "
        "instance for this scan)",
    )
    parser.add_argument(
        "--ray-cpus",
        type=int,
        help="cores each model's Ray task declares and uses (default: this machine's cores / --workers on a "
        "local instance, 1 on a cluster)",
    )
    parser.add_argument(
        "--ray-retries", type=int, default=2, help="re-runs of a Ray task whose worker died (default 2)"
    )
    parser.add_argument(
        "--max-model-seconds",
        type=float,
        metavar="S",
        help="time budget per model: a scan still running after S seconds is stopped and recorded as an "
        "error (each model then runs in a worker process)",
    )
    parser.add_argument(
        "--max-model-memory",
        type=float,
        metavar="GB",
        help="memory budget per model (Linux): an allocation beyond GB gigabytes fails that model's scan, "
        "recorded as an error, instead of waking the OOM killer",
    )
    parser.add_argument("--calibration", type=Path, help="calibration JSON from `exray calibrate`")
    parser.add_argument(
        "--min-asr",
        type=float,
        help="EX-RAY judges a trigger only when its ASR on the victim class reaches this (default: the "
        "calibration's threshold — one constant gates EX-RAY and the decision, as in the official "
        "submissions: round 3 0.9, round 2 0.99)",
    )
    parser.add_argument("--trust-pickle", action="store_true", help=TRUST_PICKLE_HELP)
    parser.add_argument(
        "--shard",
        metavar="I/N",
        help="scan only task I's share of the models (every N-th of the sorted list, from I) into "
        "OUT.shard-I-of-N.jsonl ({shard} in --out is replaced instead); join the files with `exray merge`. "
        "Default: the job-array task's, from SLURM_ARRAY_TASK_ID/_COUNT or JOB_COMPLETION_INDEX with "
        "EXRAY_SHARD_COUNT, else none; 'none' scans every model",
    )
    add_device_flag(parser)
    add_scanner_flags(parser)
    add_exray_flags(parser)
    add_output_flags(parser)
    parser.set_defaults(run=run)


#: ``--sides``: EX-RAY with both mask constraints, or one of its one-sided variants (EXP §4.1 baselines 7, 8)
REFINER_OF_SIDES = {"both": "exray", "a_to_b": "exray_v2t", "b_to_a": "exray_t2v"}


def options_from(args: argparse.Namespace) -> ScanOptions:
    return ScanOptions(
        scanner=args.scanner,
        refine=None if args.no_refine else REFINER_OF_SIDES[args.sides],
        seed=args.seed,
        layer=args.layer,
        scanner_layer=args.scanner_layer,
        scanner_options=scanner_options(args),
        policy=args.policy,
        victims=args.victims,
        refine_min_asr=args.min_asr,
        mask_config=mask_config(args),
        calibration=Calibration.load(args.calibration) if args.calibration else Calibration(),
        trust_pickle=args.trust_pickle,
        report_dir=str(args.report) if args.report else None,
        device=args.device,
    )


def entangled_note(record: dict) -> str:
    """ " — 3 of 5 verdicts on an entangled layer" when EX-RAY judged triggers where its premise fails."""
    refinement = record.get("diagnostics", {}).get("refinement") or {}
    if not refinement.get("entangled"):
        return ""
    return (
        f" — {refinement['entangled']} of {refinement['judged']} verdicts on an entangled layer (M1 > 50 %)"
    )


def shard_of(args: argparse.Namespace) -> Shard | None:
    """The ``--shard`` of the command line, else the job-array task's, else None (``--shard none``)."""
    if args.shard is None:
        return shard_from_env()
    return None if args.shard.strip().lower() == "none" else parse_shard(args.shard)


def backend_of(args: argparse.Namespace) -> RayBackend | None:
    """The Ray backend of ``--backend ray`` (None: the local pool); Ray-only flags without it are an error."""
    if args.backend == "local":
        given = [f for f in ("ray_address", "ray_cpus") if getattr(args, f) is not None]
        if given:
            raise ConfigError(f"--{given[0].replace('_', '-')} needs --backend ray")
        return None
    if args.ray_cpus is not None:
        cpus = args.ray_cpus
    elif args.ray_address or os.environ.get("RAY_ADDRESS"):
        cpus = 1  # a cluster's nodes need not have this machine's cores: one per model fits anywhere
    else:
        cpus = max(1, available_cores() // max(1, args.workers))
    return RayBackend(address=args.ray_address, cpus=cpus, retries=args.ray_retries)


def run(args: argparse.Namespace) -> int:
    options = options_from(args)
    budget = ModelBudget(seconds=args.max_model_seconds, memory_gb=args.max_model_memory)
    shard = shard_of(args)
    if shard is not None:
        total = len({str(p) for p in args.model_dirs})
        args.model_dirs, args.out = shard.select(args.model_dirs), shard.results_path(args.out)
        print(
            f"shard {shard.index}/{shard.count} ({shard.source}): {len(args.model_dirs)} of {total} models "
            f"into {args.out}",
            file=sys.stderr,
        )
    already = read_results(args.out)
    skipped = [p for p in args.model_dirs if str(p) in already]
    if skipped:
        print(f"{len(skipped)} model(s) already in {args.out}: skipped", file=sys.stderr)
    records = list(
        scan_many(
            args.model_dirs,
            options,
            out=args.out,
            workers=args.workers,
            progress=not args.quiet,
            budget=budget,
            backend=backend_of(args),
        )
    )
    for record in records:
        if args.json:
            print(json.dumps(record))
        elif record["error"]:
            print(f"{record['model']}: FAILED — {record['error'].split(' | ')[0]}")
        else:
            kept = [t for t in record["triggers"] if not t["pruned"]]
            pruned = len(record["triggers"]) - len(kept)
            print(
                f"{record['model']}: p(trojaned)={record['probability']:.3f} score={record['score']:.2f} "
                f"triggers={len(record['triggers'])} pruned-as-natural={pruned}" + entangled_note(record)
            )
    if args.report:
        from exray.report import write_index

        index = write_index(args.out, args.report)
        print(f"report: {index}", file=sys.stderr)
    print(f"results: {args.out}", file=sys.stderr)
    return 1 if records and all(r["error"] for r in records) else 0
