"""The ``exray`` command (design §3). Thin: parse arguments, call the API, print, return an exit code."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from exray.cli import calibrate, demo, diff, evaluate, merge, repair, scan, sdrm, study, trojai, zoo
from exray.errors import ExrayError
from exray.version import __version__

COMMANDS = (scan, merge, diff, repair, trojai, calibrate, zoo, sdrm, study, demo, evaluate)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="exray",
        description="Scan image classifiers for backdoors and tell injected backdoors from natural ones.",
    )
    parser.add_argument("--version", action="version", version=f"exray {__version__}")
    parser.add_argument(
        "--debug", action="store_true", help="show the Python traceback of an unexpected error"
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for command in COMMANDS:
        command.add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``exray`` console script; returns the process exit code.

    Every error is one line naming the problem (exit 2); an unexpected exception (a bug, or an input no
    check foresaw) too, with its traceback only under ``--debug`` (issue 20)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.run(args) or 0)
    except KeyboardInterrupt:
        print(f"exray {args.command}: interrupted", file=sys.stderr)
        return 130
    except Exception as err:
        expected = isinstance(err, ExrayError | OSError)  # OSError: a path that cannot be read or written
        if args.debug and not expected:
            raise
        text = " ".join(str(err).split())  # PyTorch's multi-line listings on one line
        if len(text) > 500:
            text = text[:500] + " …"
        kind = "" if isinstance(err, ExrayError) else f"{type(err).__name__}: "
        hint = "" if expected else f" (exray --debug {args.command} … shows the traceback)"
        print(f"exray {args.command}: error: {kind}{text}{hint}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
