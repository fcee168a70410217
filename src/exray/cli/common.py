"""Options shared by several subcommands."""

from __future__ import annotations

import argparse

from exray.differencing import MaskConfig
from exray.differencing.policies import POLICY_NAMES


def add_output_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    parser.add_argument("--json", action="store_true", help="print machine-readable JSON instead of text")


def add_exray_flags(parser: argparse.ArgumentParser) -> None:
    """Layer, policy and mask-optimisation options of EX-RAY."""
    group = parser.add_argument_group("EX-RAY")
    group.add_argument("--layer", help="module name of the layer (default: second-to-last conv block)")
    group.add_argument("--policy", choices=POLICY_NAMES, default="official", help="decision policy")
    group.add_argument(
        "--sides", choices=("both", "a_to_b", "b_to_a"), default="both", help="mask constraints"
    )
    group.add_argument("--loss", choices=("official", "paper"), default="official", help="mask loss form")
    group.add_argument("--epochs", type=int, default=MaskConfig.epochs, help="mask optimisation epochs")
    group.add_argument(
        "--precision", choices=("fp32", "bf16"), default="fp32", help="suffix precision (bf16: ~2x faster)"
    )
    group.add_argument("--seed", type=int, default=0, help="random seed")


def mask_config(args: argparse.Namespace) -> MaskConfig:
    return MaskConfig(loss=args.loss, epochs=args.epochs, precision=args.precision)
