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


def set_threads(threads: int | None) -> None:
    """Use `threads` CPU threads for torch (None: torch's default)."""
    if threads is not None:
        if threads < 1:
            raise ValueError(f"threads={threads}; expected >= 1")
        torch.set_num_threads(threads)
