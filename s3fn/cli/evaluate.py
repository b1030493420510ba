"""`s3fn evaluate`: score a run or a bundle on data, over one or more window seeds."""

from __future__ import annotations

import argparse
from pathlib import Path

from s3fn.cli.common import set_threads
from s3fn.data.opening import open_data
from s3fn.data.split_files import SPLIT_FILE, saved_test_part
from s3fn.evaluate import markdown_table, run_seeds
from s3fn.evaluate.results import score, summary_line, write_results
from s3fn.inference import Classifier, locate_bundle
from s3fn.progress import Progress, print_outputs


def configure(parser: argparse.ArgumentParser) -> None:
    """Add the command's description and options."""
    parser.description = (
        "Score a trained classifier (a run folder of `s3fn train`, or a bundle folder) on "
        "--data: OA, AA, kappa, macro-F1 and per-class values, window and image level; with "
        "several --seeds (window draws), mean ± std."
    )
    parser.add_argument("model", metavar="RUN_DIR_OR_BUNDLE")
    parser.add_argument("--data", required=True, help="as for `s3fn train --data`")
    parser.add_argument("--labels", help="label map of a scene cube")
    parser.add_argument("--classes", nargs="+", help="class names of a scene's labels 1..K")
    parser.add_argument("--key", help="array name inside .mat/.npz/HDF5 cube files")
    parser.add_argument(
        "--part",
        choices=("test", "all"),
        help="test: the run's test split (default for a run folder); all: everything",
    )
    parser.add_argument("--seeds", type=int, nargs="+", help="window-sampling seeds")
    parser.add_argument("--out", help="folder for metrics.json and report.md")
    parser.add_argument("--threads", type=int, help="CPU threads")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Evaluate, write metrics.json and report.md, print the scores."""
    set_threads(args.threads)
    bundle, run_dir = locate_bundle(args.model)
    classifier = Classifier.load(bundle)
    data = open_data(args.data, labels=args.labels, classes=args.classes, key=args.key)
    if data.class_names != classifier.class_names:
        raise ValueError(
            f"{args.data}: classes {data.class_names}; the classifier knows "
            f"{classifier.class_names} (same names, same order expected)"
        )
    part_name = args.part or ("test" if run_dir is not None else "all")
    part = None
    if part_name == "test":
        if run_dir is None or not (run_dir / SPLIT_FILE).is_file():
            raise FileNotFoundError(f"{args.model}: no {SPLIT_FILE}; use --part all")
        part = saved_test_part(data, run_dir / SPLIT_FILE)
    progress = Progress(args.quiet)
    seeds = args.seeds or [classifier.seed]
    evaluations = {}
    for seed in seeds:
        classifier.seed = seed
        evaluations[seed] = score(classifier, data, part, progress)
    out = Path(args.out) if args.out else (run_dir or bundle.parent) / "evaluation"
    summary = run_seeds(lambda s: evaluations[s].scalars(), seeds)
    metrics = [
        m for m in ("image_oa", "image_aa", "image_kappa", "window_oa") if m in summary.metrics
    ]
    table = markdown_table({"classifier": summary}, metrics)
    files = write_results(
        out,
        f"{bundle} on {args.data}",
        evaluations[seeds[0]],
        title=f"s3fn evaluate: {bundle} on {args.data} ({part_name})",
        extra={"part": part_name, "seeds": summary.to_dict(), "table": table},
    )
    (out / "seeds.md").write_text(table + "\n")
    if len(seeds) > 1:
        print(table)
    else:
        print(summary_line(evaluations[seeds[0]]))
    print_outputs(
        f"evaluation of {bundle} ({part_name}, seeds {seeds}):", [*files, out / "seeds.md"]
    )
    return 0
