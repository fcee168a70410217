"""``exray trojai``: the TrojAI/NIST container entry point — scan one model and write one float."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from exray.cli.common import TRUST_PICKLE_HELP
from exray.data.examples import load_examples
from exray.errors import InputError
from exray.files import check_writable
from exray.models.io import example_crop_size, input_image_size, load_model
from exray.pipeline import Calibration, scan


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
    parser.add_argument("--trust-pickle", action="store_true", help=TRUST_PICKLE_HELP)
    parser.set_defaults(run=run)


def _crop_size(model, examples_dir: Path) -> tuple[int, int] | None:
    """The rule is :func:`~exray.models.io.example_crop_size`; the examples are probed for their side only
    when the model states no input size (a TrojAI model.pt)."""
    stated = input_image_size(model) is not None
    side = 0 if stated else next(iter(load_examples(examples_dir).values())).shape[-1]
    return example_crop_size(model, side)


def run(args: argparse.Namespace) -> int:
    """Scan and write the probability; on *any* failure write 0.5 (the NIST harness scores a missing
    result file as a failed container) with the reason in the scratch record, and exit 2."""
    path = args.model_filepath
    target = path.parent if path.name == "model.safetensors" else path
    try:
        model = load_model(target, trust_pickle=args.trust_pickle)
        examples = load_examples(args.examples_dirpath, size=_crop_size(model, args.examples_dirpath))
        calibration = Calibration.load(args.calibration) if args.calibration else Calibration()
        result = scan(
            model, examples, scanner=args.scanner, seed=args.seed, calibration=calibration, name=str(path)
        )
        record, probability = result.to_dict(), f"{result.probability:.6f}"
    except Exception as err:  # untrusted input can fail anywhere; the contract is a result file
        lines = str(err).strip().splitlines()
        reason = f"{type(err).__name__}: {lines[0] if lines else ''}".rstrip(": ")
        record, probability = {"model": str(path), "probability": None, "error": reason}, None
    try:
        args.scratch_dirpath.mkdir(parents=True, exist_ok=True)
        record_path = check_writable(args.scratch_dirpath / "exray-result.json", "scratch record")
        record_path.write_text(json.dumps(record, indent=2) + "\n")
    except (OSError, InputError) as err:
        print(f"exray trojai: cannot write the scratch record: {err}", file=sys.stderr)
    try:
        check_writable(args.result_filepath, "result file")  # a FIFO would block the write for ever
        args.result_filepath.parent.mkdir(parents=True, exist_ok=True)
        args.result_filepath.write_text(f"{probability or 0.5}\n")
    except (OSError, InputError) as err:
        print(f"exray trojai: error: cannot write {args.result_filepath}: {err}", file=sys.stderr)
        return 2
    if probability is None:
        print(f"exray trojai: error: {record['error']}; wrote 0.5", file=sys.stderr)
        return 2
    print(probability)
    return 0
