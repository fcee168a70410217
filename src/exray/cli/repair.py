"""``exray repair MODEL_DIR --triggers RESULTS --out DIR``: unlearn the injected triggers of a scanned model
(exray.repair)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from exray.cli.common import TRUST_PICKLE_HELP, add_device_flag, add_output_flags
from exray.repair import RepairConfig, repair_directory


def add_parser(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "repair",
        help="unlearn a scanned model's injected triggers; write the repaired model directory",
        description=(
            "Fine-tune the model on its clean examples plus victim examples stamped with the triggers of an "
            "`exray scan` results file at their true labels (Neural Cleanse's unlearning), while the clean "
            "accuracy on held-out examples stays within the budget; write the repaired model to OUT as a "
            "model directory with a record of what was unlearned and the triggers' ASR before and after. "
            "Triggers EX-RAY judged natural are refused unless --include-natural: unlearning the features "
            "that tell two classes apart costs accuracy."
        ),
    )
    parser.add_argument("model_dir", type=Path, help="the scanned model directory")
    parser.add_argument(
        "--triggers", type=Path, required=True, help="the `exray scan` results file (JSON lines)"
    )
    parser.add_argument("--out", type=Path, required=True, help="the repaired model directory to write")
    parser.add_argument(
        "--include-natural", action="store_true", help="also unlearn triggers EX-RAY judged natural"
    )
    parser.add_argument(
        "--max-accuracy-drop",
        type=float,
        default=RepairConfig.max_accuracy_drop,
        help="clean-accuracy budget on the held-out examples (default 0.02: 2 points)",
    )
    parser.add_argument("--epochs", type=int, default=RepairConfig.epochs, help="fine-tuning epochs at most")
    parser.add_argument("--lr", type=float, default=RepairConfig.lr, help="Adam learning rate")
    parser.add_argument("--seed", type=int, default=0, help="random seed (split, batches)")
    parser.add_argument("--trust-pickle", action="store_true", help=TRUST_PICKLE_HELP)
    add_device_flag(parser)
    add_output_flags(parser)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    config = RepairConfig(epochs=args.epochs, lr=args.lr, max_accuracy_drop=args.max_accuracy_drop)
    result = repair_directory(
        args.model_dir,
        args.triggers,
        args.out,
        include_natural=args.include_natural,
        config=config,
        seed=args.seed,
        device=args.device,
        trust_pickle=args.trust_pickle,
    )
    if args.json:
        print(json.dumps({"out": str(args.out), **result.to_dict()}))
        return 0
    for t in result.unlearned:
        pair = f"trigger {t['victim']}→{t['target']} ({t['kind']})"
        print(f"{pair}: ASR {t['asr_before']:.2f} → {t['asr_after']:.2f}")
    for t in result.refused:
        print(f"trigger {t['victim']}→{t['target']} ({t['kind']}): not unlearned, {t['reason']}")
    print(
        f"clean accuracy (held-out examples) {result.accuracy_before:.3f} → {result.accuracy_after:.3f}; "
        f"{result.epochs} epoch(s), stopped: {result.stopped}"
    )
    print(f"repaired model: {args.out}", file=sys.stderr)
    return 0
