"""Options shared by several subcommands."""

from __future__ import annotations

import argparse
from typing import Any

from exray.differencing import PRECISION_SETTINGS, MaskConfig, resolve_precision
from exray.differencing.policies import POLICY_NAMES
from exray.errors import ConfigError, InputError
from exray.files import parse_yaml
from exray.models.runtime import resolve_device

#: The help of every command's --trust-pickle.
TRUST_PICKLE_HELP = (
    "load pickled models other than the torchvision architectures exray rebuilds (README, 'Model "
    "directories'); unpickling them runs code from the file"
)


def thread_count(text: str) -> int:
    """argparse type of ``--threads``, ``--workers``, ``--train-threads``: an integer in [1, 1024]."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be an integer in [1, 1024], got {text!r}") from None
    if not 1 <= value <= 1024:
        raise argparse.ArgumentTypeError(f"must be an integer in [1, 1024], got {value}")
    return value


def add_device_flag(parser: argparse.ArgumentParser | argparse._ArgumentGroup, default: str = "auto") -> None:
    """``--device``: where the models run (issue 18 §4; :func:`exray.models.runtime.resolve_device`)."""
    notes = {"auto": "auto: a CUDA GPU if PyTorch sees one, else the CPU", "cpu": "cpu: reproducible"}
    note = notes.get(default, "as given before the mode")
    parser.add_argument(
        "--device",
        default=default,
        metavar="auto|cpu|cuda[:N]",
        help=f"where the models run (default {note}); a GPU computes other floats than the CPU",
    )


def add_output_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    parser.add_argument("--json", action="store_true", help="print machine-readable JSON instead of text")


def add_exray_flags(parser: argparse.ArgumentParser) -> None:
    """Layer, policy and mask-optimisation options of EX-RAY."""
    group = parser.add_argument_group("EX-RAY")
    add_refinement_flags(group)
    group.add_argument(
        "--sides", choices=("both", "a_to_b", "b_to_a"), default="both", help="mask constraints"
    )
    group.add_argument("--seed", type=int, default=0, help="random seed")


def add_refinement_flags(group: argparse._ArgumentGroup) -> None:
    """The layer, decision policy and mask optimisation shared by ``scan``, ``diff`` and ``evaluate``."""
    group.add_argument(
        "--layer",
        help="module name, block:K or block:middle (default: block:-2, the second-to-last conv block); "
        "auto: per model, the block whose clean-pair masks cover the least of the layer",
    )
    group.add_argument("--policy", choices=POLICY_NAMES, default="official", help="EX-RAY decision policy")
    group.add_argument("--epochs", type=int, default=MaskConfig.epochs, help="mask optimisation epochs")
    group.add_argument(
        "--precision",
        choices=PRECISION_SETTINGS,
        default="fp32",
        help="mask optimisation precision (bf16: ~2x faster on CPUs with bf16 units and on GPUs from Ampere; "
        "fp16: for older GPUs; auto: bf16 where the device computes it natively, else fp32)",
    )
    group.add_argument(
        "--patience",
        type=int,
        help="stop a mask problem once its best mask has not shrunk for this many epochs (default: never)",
    )
    group.add_argument("--loss", choices=("official", "paper"), default="official", help="mask loss form")
    group.add_argument(
        "--m1-pairing",
        choices=("random", "index"),
        default=MaskConfig.m1_pairing,
        help="M1's victim/target pairs: redrawn every epoch (random, the paper) or victim j with target j "
        "(index, the official script)",
    )


def mask_config(args: argparse.Namespace) -> MaskConfig:
    """The mask settings of ``args``, ``--precision auto`` resolved on ``--device``."""
    device = resolve_device(getattr(args, "device", "auto"))
    return MaskConfig(
        loss=args.loss,
        epochs=args.epochs,
        precision=resolve_precision(args.precision, device),
        patience=args.patience,
        m1_pairing=args.m1_pairing,
    )


def add_scanner_flags(parser: argparse.ArgumentParser, *, layer: bool = True) -> None:
    """The upstream scanner's settings (and its layer, unless ``layer`` is False)."""
    group = parser.add_argument_group("scanner")
    if layer:
        group.add_argument(
            "--scanner-layer", help="the scanner's layer (default: its own, the second-to-last block)"
        )
    group.add_argument(
        "--scanner-option",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a scanner setting, e.g. epochs=20 or modes=[patch] (repeatable; values are read as YAML)",
    )


def scanner_options(args: argparse.Namespace) -> dict[str, Any]:
    """``--scanner-option KEY=VALUE`` flags as a dict (the scanner validates names and values)."""
    options: dict[str, Any] = {}
    for item in args.scanner_option:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--scanner-option takes KEY=VALUE, got {item!r}")
        try:
            parsed = parse_yaml(value, f"--scanner-option {key.strip()}={value[:40]}")
        except InputError as err:
            raise ConfigError(str(err)) from None
        options[key.strip()] = tuple(parsed) if isinstance(parsed, list) else parsed
    return options
