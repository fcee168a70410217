"""``exray diff``: EX-RAY on one trigger given as stamped image files."""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

from exray.cli.common import (
    TRUST_PICKLE_HELP,
    add_device_flag,
    add_exray_flags,
    add_output_flags,
    mask_config,
)
from exray.data.examples import load_examples
from exray.data.images import IMAGE_SUFFIXES, read_images
from exray.differencing import compare_trigger
from exray.errors import InputError
from exray.files import check_writable
from exray.models.io import input_image_size, load_model
from exray.utils import versions


def add_parser(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "diff",
        help="judge one trigger: natural or injected?",
        description=(
            "Compare the victim/target feature differences (M1) with the victim/stamped ones (M2) and print "
            "the verdict. The victim and target images are the model directory's clean examples."
        ),
    )
    parser.add_argument(
        "model_dir", type=Path, help="model directory (config.json + model.safetensors, or TrojAI)"
    )
    parser.add_argument("--victim", type=int, required=True, help="victim class V")
    parser.add_argument("--target", type=int, required=True, help="target class T")
    parser.add_argument(
        "--stamped", type=Path, required=True, help="folder of victim images stamped with the trigger"
    )
    parser.add_argument("--kind", choices=("patch", "filter"), default="patch", help="trigger kind")
    parser.add_argument(
        "--out", type=Path, help="write the verdict and masks as JSON (default: exray-diff-V-T.json)"
    )
    parser.add_argument("--trust-pickle", action="store_true", help=TRUST_PICKLE_HELP)
    add_device_flag(parser)
    add_exray_flags(parser)
    add_output_flags(parser)
    parser.set_defaults(run=run)


def _natural_key(path: Path) -> list:
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", path.name)]


def run(args: argparse.Namespace) -> int:
    model = load_model(args.model_dir, trust_pickle=args.trust_pickle, device=args.device)
    size = input_image_size(model)
    examples = load_examples(args.model_dir, size=size)
    for label in (args.victim, args.target):
        if label not in examples:
            raise InputError(f"the model directory has no example images of class {label}")
    out = check_writable(args.out or Path(f"exray-diff-{args.victim}-{args.target}.json"), "--out")
    files = (
        sorted((p for p in args.stamped.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES), key=_natural_key)
        if args.stamped.is_dir()
        else []
    )
    if not files:
        raise InputError(f"{args.stamped} holds no image files")
    stamped = read_images(files, size)
    verdict = compare_trigger(
        model,
        victim=examples[args.victim],
        target=examples[args.target],
        stamped=stamped,
        victim_label=args.victim,
        target_label=args.target,
        layer=args.layer,
        policy=args.policy,
        kind=args.kind,
        sides=args.sides,
        config=mask_config(args),
        seed=args.seed,
        progress=not args.quiet,
    )
    record = {"model": str(args.model_dir), "verdict": verdict.to_dict(), "versions": versions()}
    out.write_text(json.dumps(record, indent=2) + "\n")
    if args.json:
        print(json.dumps(record))
    else:
        print(verdict.summary())
        print(f"masks written to {out}")
    return 0
