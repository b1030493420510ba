"""`s3fn evaluate`: score a run or a bundle on data, over one or more window seeds."""

from __future__ import annotations

import argparse
import warnings
from pathlib import Path

from s3fn.cli.common import add_band_tolerance, set_threads
from s3fn.data.opening import open_data
from s3fn.data.split_files import saved_test_part, scoring_target, trained_pixels
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
    parser.add_argument(
        "--data", help="as for `s3fn train --data` (default for a run folder: the run's data)"
    )
    parser.add_argument(
        "--labels",
        help="label map of a scene cube; with a run folder, separate labels to score it on",
    )
    parser.add_argument("--classes", nargs="+", help="class names of a scene's labels 1..K")
    parser.add_argument("--key", help="array name inside .mat/.npz/HDF5 cube files")
    parser.add_argument(
        "--part",
        choices=("test", "all"),
        help="test: the run's test part (default for a run folder without --labels); all: "
        "every labelled pixel or image",
    )
    parser.add_argument("--seeds", type=int, nargs="+", help="window-sampling seeds")
    parser.add_argument("--out", help="folder for metrics.json and report.md")
    add_band_tolerance(parser)
    parser.add_argument("--threads", type=int, help="CPU threads")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Evaluate, write metrics.json and report.md, print the scores."""
    set_threads(args.threads)
    bundle, run_dir = locate_bundle(args.model)
    classifier = Classifier.load(bundle)
    classifier.band_tolerance = args.band_tolerance
    target = scoring_target(run_dir, args.data, args.labels, args.classes, args.key, args.part)
    data = open_data(target.data, labels=target.labels, classes=target.classes, key=target.key)
    if data.class_names != classifier.class_names:
        raise ValueError(
            f"{target.data}: classes {data.class_names}; the classifier knows "
            f"{classifier.class_names} (same names, same order expected)"
        )
    part_name = target.part
    part = None if target.split_file is None else saved_test_part(data, target.split_file)
    if run_dir is not None and part is None:
        trained = trained_pixels(data, run_dir)
        if trained:
            warnings.warn(
                f"{trained} of the scored pixels trained this run's model: its score on them "
                "is optimistic",
                stacklevel=1,
            )
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
        f"{bundle} on {target.data}",
        evaluations[seeds[0]],
        title=f"s3fn evaluate: {bundle} on {target.data} ({part_name})",
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
