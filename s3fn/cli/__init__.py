"""The `s3fn` command: train, evaluate, predict, describe, embed, demo, info.

Exit codes: 0 success, 2 bad usage (argparse), 1 a failure, reported as one line
`s3fn: error: ...` (the traceback only with `--debug`), 130 when interrupted.
"""

from __future__ import annotations

import argparse
import os
import sys

from s3fn.cli import demo, describe, embed, evaluate, info, predict, train
from s3fn.cli.common import common_options

COMMANDS = (demo, train, evaluate, predict, describe, embed, info)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every subcommand."""
    from s3fn import __version__

    parser = argparse.ArgumentParser(
        prog="s3fn",
        description="Hyperspectral image classification with label semantics (S3FN).",
        epilog="Run `s3fn COMMAND --help` for the options of a command.",
    )
    parser.add_argument("--version", action="version", version=f"s3fn {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    parent = common_options()
    for command in COMMANDS:
        command.add_parser(commands, parent)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `s3fn` console script; returns the exit code."""
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    args = build_parser().parse_args(argv)
    try:
        return args.run(args)
    except KeyboardInterrupt:
        print("s3fn: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:
        if args.debug:
            raise
        print(f"s3fn: error: {one_line(exc)}", file=sys.stderr)
        return 1


def one_line(exc: BaseException) -> str:
    """The exception as one line; its type is named when the message alone would be unclear."""
    text = " ".join(str(exc).split())
    if isinstance(exc, FileNotFoundError) and exc.filename and exc.strerror:
        text = f"{exc.filename}: {exc.strerror.lower()}"
    if not text:
        return type(exc).__name__
    generic = (KeyError, IndexError, AttributeError, TypeError, AssertionError, RuntimeError)
    return f"{type(exc).__name__}: {text}" if isinstance(exc, generic) else text
