"""`s3fn info`: versions, compiled backends and threads of this installation."""

from __future__ import annotations

import argparse
import json


def configure(parser: argparse.ArgumentParser) -> None:
    """Add the command's description and options."""
    parser.description = "Print the package and torch versions, the compiled backends and threads."
    parser.add_argument("--json", action="store_true", help="print machine-readable JSON")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Print the installation's facts."""
    from s3fn.info import build_info, format_info

    facts = build_info()
    print(json.dumps(facts, indent=2) if args.json else format_info(facts))
    return 0
