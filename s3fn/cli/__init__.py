"""The `s3fn` command: train, evaluate, predict, export, describe, embed, demo, info.

Each command lives in `s3fn.cli.<name>`, which parses its arguments and prints; the work is
done by the library. Only the command being run is imported with its options, so predicting
never loads the training code.

Exit codes: 0 success, 2 bad usage (argparse), 1 a failure, reported as one line
`s3fn: error: ...` (the traceback only with `--debug`), 130 when interrupted.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import warnings

from s3fn.cli.common import common_options

# name: the one-line help of `s3fn --help`; s3fn.cli.<name> adds the options when chosen.
COMMANDS = {
    "demo": "S3FN vs the 3D-CNN vs the spectral-mean baseline on built-in data",
    "train": "train a classifier into a run folder",
    "evaluate": "score a run or a bundle on data",
    "predict": "classify cubes with a bundle",
    "export": "a bundle's map model for one tile, as ONNX or torch.export .pt2",
    "describe": "LLM -> class descriptions file",
    "embed": "class descriptions -> class embeddings file",
    "info": "versions, compiled backends and threads of this installation",
}


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The argument parser, with the options of `command` (of every command when None)."""
    from s3fn import __version__

    parser = argparse.ArgumentParser(
        prog="s3fn",
        description="Hyperspectral image classification with label semantics (S3FN).",
        epilog="Run `s3fn COMMAND --help` for the options of a command.",
    )
    parser.add_argument("--version", action="version", version=f"s3fn {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    parent = common_options()
    for name, help in COMMANDS.items():
        subparser = commands.add_parser(name, parents=[parent], help=help)
        if command is None or command == name:
            importlib.import_module(f"s3fn.cli.{name}").configure(subparser)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `s3fn` console script; returns the exit code."""
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    warnings.formatwarning = _warning_line
    argv = sys.argv[1:] if argv is None else list(argv)
    chosen = next((arg for arg in argv if not arg.startswith("-")), "")
    args = build_parser(chosen).parse_args(argv)
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


def _warning_line(message: Warning | str, *_: object, **__: object) -> str:
    """A warning as the command prints it: one line, no source location."""
    return f"s3fn: warning: {' '.join(str(message).split())}\n"


def one_line(exc: BaseException) -> str:
    """The exception as one line; its type is named when the message alone would be unclear."""
    text = " ".join(str(exc).split())
    if isinstance(exc, FileNotFoundError) and exc.filename and exc.strerror:
        text = f"{exc.filename}: {exc.strerror.lower()}"
    if not text:
        return type(exc).__name__
    generic = (KeyError, IndexError, AttributeError, TypeError, AssertionError, RuntimeError)
    return f"{type(exc).__name__}: {text}" if isinstance(exc, generic) else text
