"""The ``exray`` command (design §3). Thin: parse arguments, call the API, print, return an exit code."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from exray import __version__
from exray.cli import calibrate, demo, diff, evaluate, scan, sdrm, trojai, zoo
from exray.errors import ExrayError

COMMANDS = (scan, diff, trojai, calibrate, zoo, sdrm, demo, evaluate)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="exray",
        description="Scan image classifiers for backdoors and tell injected backdoors from natural ones.",
    )
    parser.add_argument("--version", action="version", version=f"exray {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for command in COMMANDS:
        command.add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``exray`` console script; returns the process exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.run(args) or 0)
    except ExrayError as err:
        print(f"exray {args.command}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"exray {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
