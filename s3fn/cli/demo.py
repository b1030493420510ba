"""`s3fn demo`: train and compare the three methods on the built-in data, with a report."""

from __future__ import annotations

import argparse

from s3fn.cli.common import set_threads
from s3fn.progress import Progress, print_outputs


def configure(parser: argparse.ArgumentParser) -> None:
    """Add the command's description and options."""
    parser.description = (
        "Train S3FN at its default options, the plain 3D-CNN and the linear pixel model on two "
        "built-in tasks shaped like users' data: small objects with 4 training images per "
        "class, and a scene labelled on its west side and mapped on the east. Print the "
        "scores (mean ± std over split seeds) with which method wins and why, and write "
        "report.md, each task's report, PNGs and S3FN bundle, and metrics.json. About 2.5 "
        "minutes on 2 idle CPU cores (longer when they are shared); --quick (one seed, fewer "
        "windows and epochs) under a minute."
    )
    parser.add_argument("--out", default="s3fn-demo", help="output folder (default: s3fn-demo)")
    parser.add_argument("--quick", action="store_true", help="one seed, fewer windows and epochs")
    parser.add_argument("--threads", type=int, help="CPU threads")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Run the demo and print the table and where the report went."""
    from s3fn.demo import FULL, QUICK, run_demo

    set_threads(args.threads)
    result = run_demo(args.out, QUICK if args.quick else FULL, Progress(args.quiet))
    print(result.text)
    print_outputs(f"report: {result.files[0]}; all outputs:", result.files)
    return 0
