"""``exray study repair SPEC --out DIR``: the paper's other studies (issue 19 §2); repair (Table 8) so far."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from exray.cli.common import add_output_flags, thread_count
from exray.studies.repair import load_spec, run_repair_study, write_report
from exray.utils import set_thread_budget
from exray.zoo import default_workers


def add_parser(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "study",
        help="the EX-RAY paper's studies on generated populations (repair: Table 8)",
        description="Studies of the EX-RAY paper run on exray's populations (issue 19).",
    )
    commands = parser.add_subparsers(dest="study_command", required=True, metavar="STUDY")
    repair = commands.add_parser(
        "repair",
        help="Table 8: unlearning injected vs natural backdoors, trigger sizes before and after",
        description=(
            "Build (or reuse) the spec's zoo; for every model invert Neural Cleanse's trigger for every "
            "(victim, target) pair, unlearn the planted pair (trojaned) or the smallest one (clean) under "
            "the same budget, invert again, and write study-repair.md/.csv/.json and a trigger-size heat-map "
            "per model into DIR. Finished models are cached in DIR/models: rerunning resumes."
        ),
    )
    repair.add_argument("spec", type=Path, help="study spec (.yaml or .json), e.g. studies/repair.yaml")
    repair.add_argument("--out", type=Path, required=True, help="output and cache directory")
    repair.add_argument(
        "--workers", type=thread_count, default=default_workers(), help="parallel zoo builds (default: cores)"
    )
    repair.add_argument("--threads", type=thread_count, help="torch intra-op threads (default: torch's)")
    add_output_flags(repair)
    repair.set_defaults(run=run_repair)


def run_repair(args: argparse.Namespace) -> int:
    spec = load_spec(args.spec)
    set_thread_budget(args.threads)
    results = run_repair_study(spec, args.out, workers=args.workers, progress=not args.quiet)
    paths = write_report(results, args.out)
    if args.json:
        print(json.dumps({"files": {k: str(v) for k, v in paths.items()}, "table": results["table"]}))
    else:
        print(paths["markdown"].read_text(), end="")
        cached = sum(r["cached"] for r in results["records"])
        print(f"\n{len(results['records'])} models ({cached} from the cache) in {results['seconds']:.0f} s")
        print(f"written: {paths['markdown']}, {paths['csv']}, {paths['json']} and sizes-*.png")
    return 0
