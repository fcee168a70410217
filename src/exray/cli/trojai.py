"""``exray trojai``: the TrojAI/NIST container entry point — scan one model and write one float."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from exray.data.examples import load_examples
from exray.errors import ExrayError
from exray.models.io import input_image_size, load_model
from exray.pipeline import Calibration, scan

TROJAI_EXAMPLE_SIZE, TROJAI_INPUT_SIZE = 256, 224


def add_parser(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "trojai",
        help="TrojAI-container-compatible entry point: write P(trojaned) as one float",
        description=(
            "Scan the model at --model_filepath with the clean examples in --examples_dirpath and write "
            "the probability that it is trojaned to --result_filepath. TrojAI's 256x256 examples are "
            "centre-cropped to the 224x224 model input (spec §1). On failure 0.5 is written and the exit "
            "code is 2."
        ),
    )
    parser.add_argument(
        "--model_filepath", type=Path, required=True, help="model.pt, model.safetensors or a model dir"
    )
    parser.add_argument("--result_filepath", type=Path, required=True, help="where to write the probability")
    parser.add_argument(
        "--scratch_dirpath", type=Path, required=True, help="scratch space (the full record goes here)"
    )
    parser.add_argument("--examples_dirpath", type=Path, required=True, help="clean example images")
    parser.add_argument("--scanner", choices=("abs", "nc"), default="abs")
    parser.add_argument("--calibration", type=Path, help="calibration JSON from `exray calibrate`")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--trust-pickle", action="store_true", help="required to load a pickled model.pt")
    parser.set_defaults(run=run)


def _crop_size(model, examples_dir: Path) -> tuple[int, int] | None:
    size = input_image_size(model)
    if size is not None:
        return size
    probe = load_examples(examples_dir)
    height = next(iter(probe.values())).shape[-1]
    return (TROJAI_INPUT_SIZE, TROJAI_INPUT_SIZE) if height == TROJAI_EXAMPLE_SIZE else None


def run(args: argparse.Namespace) -> int:
    args.scratch_dirpath.mkdir(parents=True, exist_ok=True)
    path = args.model_filepath
    target = path.parent if path.name == "model.safetensors" else path
    try:
        model = load_model(target, trust_pickle=args.trust_pickle)
        examples = load_examples(args.examples_dirpath, size=_crop_size(model, args.examples_dirpath))
        calibration = Calibration.load(args.calibration) if args.calibration else Calibration()
        result = scan(
            model, examples, scanner=args.scanner, seed=args.seed, calibration=calibration, name=str(path)
        )
    except ExrayError as err:
        args.result_filepath.write_text("0.5\n")
        print(f"exray trojai: error: {err}; wrote 0.5", file=sys.stderr)
        return 2
    (args.scratch_dirpath / "exray-result.json").write_text(json.dumps(result.to_dict(), indent=2) + "\n")
    args.result_filepath.write_text(f"{result.probability:.6f}\n")
    print(f"{result.probability:.6f}")
    return 0
