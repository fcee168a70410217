"""``exray trojai``: the TrojAI/NIST container entry point — scan one model and write one float."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from exray.cli.common import TRUST_PICKLE_HELP, add_device_flag
from exray.errors import ConfigError, InputError
from exray.files import check_writable
from exray.harness import configure, learned_calibration, load_metaparameters
from exray.pipeline import Calibration, ScanOptions, ScanSettings, scan
from exray.pipeline.loading import load_scan_inputs


def _add_infer_flags(parser: argparse.ArgumentParser, *, required: bool) -> None:
    parser.add_argument(
        "--model_filepath", type=Path, required=required, help="model.pt, model.safetensors or a model dir"
    )
    parser.add_argument(
        "--result_filepath", type=Path, required=required, help="where to write the probability"
    )
    parser.add_argument(
        "--scratch_dirpath", type=Path, required=required, help="scratch space (the full record goes here)"
    )
    parser.add_argument("--examples_dirpath", type=Path, required=required, help="clean example images")
    # In the infer mode these three are also accepted before the mode's name: its parser must not reset them
    # to its defaults (argparse applies a subparser's defaults over the parent's values).
    inherit = {"default": argparse.SUPPRESS} if required else {}
    parser.add_argument("--calibration", type=Path, help="calibration JSON from `exray calibrate`", **inherit)
    parser.add_argument("--trust-pickle", action="store_true", help=TRUST_PICKLE_HELP, **inherit)
    add_device_flag(parser, **inherit)


def _add_harness_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--metaparameters_filepath", type=Path, required=True, help="metaparameters JSON")
    parser.add_argument(
        "--schema_filepath", type=Path, required=True, help="JSON schema of the metaparameters"
    )
    parser.add_argument(
        "--learned_parameters_dirpath", type=Path, required=True, help="learned parameters (the calibration)"
    )
    parser.add_argument(
        "--scale_parameters_filepath",
        type=Path,
        help="passed by the harness; exray learns no feature scaling",
    )


def add_parser(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "trojai",
        help="TrojAI-container-compatible entry point: write P(trojaned) as one float",
        description=(
            "The TrojAI/NIST container entry point. Rounds 1-4: `exray trojai --model_filepath ... "
            "--result_filepath ... --scratch_dirpath ... --examples_dirpath ...` scans the model and writes "
            "the probability that it is trojaned (TrojAI's 256x256 examples are centre-cropped to a 224x224 "
            "input unless the model states its input size). Round 10 onwards: `exray trojai infer` (the same "
            "with the metaparameters and learned parameters the harness passes) and `exray trojai "
            "configure` (fit the calibration on labelled models into the learned-parameters directory); "
            "exray.harness. On failure infer writes 0.5 and exits with 2."
        ),
    )
    _add_infer_flags(parser, required=False)
    parser.add_argument(
        "--scanner", choices=("abs", "nc"), help="rounds 1-4 only (default abs; infer: the metaparameters')"
    )
    parser.add_argument("--seed", type=int, help="rounds 1-4 only (default 0; infer: the metaparameters')")
    modes = parser.add_subparsers(dest="mode", metavar="MODE")
    infer = modes.add_parser("infer", help="scan one model with the harness's metaparameters")
    _add_infer_flags(infer, required=True)
    _add_harness_flags(infer)
    infer.add_argument(
        "--round_training_dataset_dirpath", type=Path, required=True, help="passed by the harness; not read"
    )
    infer.add_argument("--source_dataset_dirpath", type=Path, help="passed by the harness; not read")
    configure = modes.add_parser("configure", help="fit the calibration on labelled models")
    configure.add_argument("--scratch_dirpath", type=Path, required=True, help="scratch space")
    configure.add_argument(
        "--configure_models_dirpath", type=Path, required=True, help="id-*/ model dirs with ground_truth.csv"
    )
    _add_harness_flags(configure)
    configure.add_argument(
        "--automatic_configuration",
        action="store_true",
        help="accepted for the harness: exray's configuration is always the calibration fit",
    )
    configure.add_argument("--workers", type=int, default=1, help="models scanned in parallel")
    configure.add_argument("--trust-pickle", action="store_true", help=TRUST_PICKLE_HELP)
    add_device_flag(configure)
    configure.add_argument("--quiet", action="store_true", help="no progress bars")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    if args.mode == "configure":
        meta = load_metaparameters(args.metaparameters_filepath, args.schema_filepath)
        summary = configure(
            args.configure_models_dirpath,
            args.scratch_dirpath,
            meta,
            args.metaparameters_filepath,
            args.learned_parameters_dirpath,
            workers=args.workers,
            progress=not args.quiet,
            device=args.device,
        )
        print(
            f"calibration fitted on {summary['models']} models ({summary['trojaned']} trojaned, "
            f"{summary['failed']} failed): {summary['calibration']}",
            file=sys.stderr,
        )
        return 0
    missing = [f"--{k}" for k in ("model_filepath", "result_filepath", "scratch_dirpath", "examples_dirpath")]
    missing = [flag for flag in missing if getattr(args, flag[2:]) is None]
    if missing:
        raise ConfigError(f"exray trojai needs {', '.join(missing)} (or a mode: infer, configure)")
    return infer(args)


def _scan_settings(args: argparse.Namespace) -> ScanSettings:
    """scan()'s settings: the metaparameters' (infer) or the legacy flags' (rounds 1–4)."""
    if args.mode != "infer":
        calibration = Calibration.load(args.calibration) if args.calibration else Calibration()
        scanner, seed = args.scanner or "abs", args.seed or 0
        return ScanOptions(scanner=scanner, seed=seed, calibration=calibration).scan_settings()
    given = [flag for flag in ("scanner", "seed") if getattr(args, flag) is not None]
    if given:
        raise ConfigError(
            f"exray trojai infer takes the scanner and seed from the metaparameters; "
            f"drop {', '.join('--' + flag for flag in given)} (they are for the rounds 1-4 interface)"
        )
    meta = load_metaparameters(args.metaparameters_filepath, args.schema_filepath)
    calibration = (
        Calibration.load(args.calibration)
        if args.calibration
        else learned_calibration(args.learned_parameters_dirpath)
    )
    return meta.scan_options(calibration).scan_settings()


def infer(args: argparse.Namespace) -> int:
    """Scan and write the probability; on *any* failure write 0.5 (the NIST harness scores a missing
    result file as a failed container) with the reason in the scratch record, and exit 2."""
    path = args.model_filepath
    target = path.parent if path.name == "model.safetensors" else path
    try:
        settings = _scan_settings(args)
        model, examples = load_scan_inputs(
            target, args.examples_dirpath, trust_pickle=args.trust_pickle, device=args.device
        )
        result = scan(model, examples, settings, name=str(path))
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
