"""`s3fn demo`: train and compare the three methods on the built-in data, with a report."""

from __future__ import annotations

import argparse

from s3fn.cli.common import set_threads
from s3fn.progress import Progress, print_outputs


def configure(parser: argparse.ArgumentParser) -> None:
    """Add the command's description and options."""
    parser.description = (
        "Train S3FN, the plain 3D-CNN and the spectral-mean MLP on the built-in materials "
        "dataset with the bundled descriptions and the offline text encoder; print image-level "
        "OA / AA / kappa (mean ± std over 3 split seeds) and write report.md, PNGs, "
        "metrics.json and the S3FN bundle. About 1.5 minutes on 2 idle CPU cores (longer when "
        "they are shared); --quick (one seed, fewer windows and epochs) about 15 s."
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
    print(result.table)
    print(f"(image-level, mean ± std over seeds {list(result.per_seed)}; {result.seconds:.0f} s)")
    print_outputs(f"report: {result.files[0]}; all outputs:", result.files)
    return 0
