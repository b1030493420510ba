"""Pieces every subcommand shares: --quiet/--debug and thread settings."""

from __future__ import annotations

import argparse

import torch


def common_options() -> argparse.ArgumentParser:
    """The options every subcommand takes (a parent parser)."""
    parent = argparse.ArgumentParser(add_help=False)
    group = parent.add_argument_group("common options")
    group.add_argument("--quiet", action="store_true", help="no progress bars or progress lines")
    group.add_argument("--debug", action="store_true", help="show the traceback of an error")
    return parent


def add_band_tolerance(parser: argparse.ArgumentParser) -> None:
    """`--band-tolerance NM`: how far a trained band may lie outside a cube's range and still be
    filled (the commands that read cubes with the classifier take it)."""
    parser.add_argument(
        "--band-tolerance",
        type=_nm,
        metavar="NM",
        help="fill trained bands at most NM nm beyond a cube's range from the nearest covered "
        "band, with a warning (default: 20 nm or two band widths, whichever is larger; "
        "0: fill none)",
    )


def _nm(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not 0 <= value < float("inf"):
        raise argparse.ArgumentTypeError(f"{text!r}; expected a number of nm >= 0")
    return value


def set_threads(threads: int | None) -> None:
    """Use `threads` CPU threads for torch (None: torch's default)."""
    if threads is not None:
        if threads < 1:
            raise ValueError(f"threads={threads}; expected >= 1")
        torch.set_num_threads(threads)
