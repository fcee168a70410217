"""``exray merge``: join the results files of a sharded scan (``exray scan --shard I/N``) into one."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from exray.pipeline.shards import merge_results


def add_parser(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "merge",
        help="join the results files of a sharded scan",
        description=(
            "Join JSON-lines results files (the shards of `exray scan --shard I/N`) into one, one line per "
            "model sorted by model. A model in several files keeps a successful record over a failed one, "
            "else the last file's."
        ),
    )
    parser.add_argument("files", nargs="+", type=Path, help="results files to join")
    parser.add_argument("--out", type=Path, default=Path("results.jsonl"), help="the joined results file")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    merged = merge_results(args.files, args.out)
    failed = sum(1 for record in merged.values() if record.get("error"))
    print(
        f"{len(merged)} models ({failed} failed) from {len(args.files)} files → {args.out}", file=sys.stderr
    )
    return 0
