"""``exray study repair|adaptive|semantic SPEC --out DIR``: the paper's other studies (issue 19 §2): repair
(Table 8), the adaptive attack (Table 7) and semantic backdoors (Tables 4-6, WaNet and input-aware rows)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from exray.cli.common import add_output_flags, thread_count
from exray.studies import adaptive as adaptive_study
from exray.studies import semantic as semantic_study
from exray.studies.repair import load_spec, run_repair_study, write_report
from exray.utils import set_thread_budget
from exray.zoo import default_workers

#: (name, help, description) of each study subcommand; the runners are below.
STUDIES = (
    (
        "repair",
        "Table 8: unlearning injected vs natural backdoors, trigger sizes before and after",
        "Build (or reuse) the spec's zoo; for every model invert Neural Cleanse's trigger for every (victim, "
        "target) pair, unlearn the planted pair (trojaned) or the smallest one (clean) under the same "
        "budget, invert again, and write study-repair.md/.csv/.json and a trigger-size heat-map per model "
        "into DIR. Finished models are cached in DIR/models: rerunning resumes.",
    ),
    (
        "adaptive",
        "Table 7: the adaptive attack against EX-RAY at growing loss weights",
        "Build (or reuse) the spec's clean models and, per adaptive-loss weight, its trojaned models trained "
        "with the adaptive loss; scan every model with ABS + EX-RAY and write study-adaptive.md/.csv/.json "
        "into DIR (Table 7 next to the paper's). Scans are cached in DIR/scans: rerunning resumes.",
    ),
    (
        "semantic",
        "Tables 4-6 / WaNet / input-aware: ABS alone vs ABS + EX-RAY per semantic attack",
        "Build (or reuse) the spec's zoo, whose trigger types are attacks (reflection, warp, …), train the "
        "spec's procedure attacks (composite, hidden, input_aware, wanet) into DIR/trained, evaluate ABS "
        "and ABS + EX-RAY per attack against the same clean models and write study-semantic.md/.csv (next to "
        "the paper's numbers) and the evaluations into DIR/evaluation* (cached: rerunning resumes).",
    ),
)


def add_parser(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "study",
        help="the EX-RAY paper's studies on generated populations (Tables 4-8)",
        description="Studies of the EX-RAY paper run on exray's populations (issue 19).",
    )
    commands = parser.add_subparsers(dest="study_command", required=True, metavar="STUDY")
    runners = {"repair": run_repair, "adaptive": run_adaptive, "semantic": run_semantic}
    for name, help_text, description in STUDIES:
        study = commands.add_parser(name, help=help_text, description=description)
        study.add_argument("spec", type=Path, help=f"study spec (.yaml or .json), e.g. studies/{name}.yaml")
        study.add_argument("--out", type=Path, required=True, help="output and cache directory")
        study.add_argument(
            "--workers",
            type=thread_count,
            default=default_workers(),
            help="models trained (and, in the semantic study, evaluated) at once (default: cores)",
        )
        study.add_argument(
            "--threads",
            type=thread_count,
            help="torch intra-op threads of this process (default: torch's); in the semantic study, of each "
            "evaluated model (default 1); zoo and trained-attack models always train on 1",
        )
        add_output_flags(study)
        study.set_defaults(run=runners[name])


def run_adaptive(args: argparse.Namespace) -> int:
    spec = adaptive_study.load_spec(args.spec)
    set_thread_budget(args.threads)
    results = adaptive_study.run_adaptive_study(spec, args.out, workers=args.workers, progress=not args.quiet)
    paths = adaptive_study.write_report(results, args.out)
    if args.json:
        print(json.dumps({"files": {k: str(v) for k, v in paths.items()}, "table": results["table"]}))
    else:
        print(paths["markdown"].read_text(), end="")
        print(f"\n{results['seconds']:.0f} s; written: {paths['markdown']}, {paths['csv']}, {paths['json']}")
    return 0


def run_semantic(args: argparse.Namespace) -> int:
    spec = semantic_study.load_spec(args.spec)
    set_thread_budget(args.threads)
    results = semantic_study.run_semantic_study(
        spec, args.out, workers=args.workers, progress=not args.quiet, threads=args.threads
    )
    if args.json:
        print(
            json.dumps({"rows": results["rows"], "files": {k: str(v) for k, v in results["files"].items()}})
        )
    else:
        print(results["files"]["markdown"].read_text(), end="")
        files = results["files"]
        print(f"\n{results['seconds']:.0f} s; written: {files['markdown']}, {files['csv']}")
    return 0


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
