"""The accuracy suite: S3FN with its default options against the paper's recipe and baselines.

    python -m benchmarks.accuracy [--quick] [--datasets NAME ...] [--methods NAME ...]
                                  [--seeds N] [--semantics] [--fresh] [--cached-only]

Datasets: the built-in object data and scene (`materials`, `materials-scene`), small objects
stored as raw uint16 images with their water-absorption bands (`small-objects`, made by
`benchmarks.accuracy_data`), and three real airborne scenes (`samson`, `jasper-ridge`,
`moffett`, from shared/data/real; skipped when that folder is missing).

Methods: `default` (what a user's first `s3fn train` does: `s3fn.train.run.train_run` with the
default options and the class descriptions), `paper` (the same with `preset="paper"`), `cnn`
(the plain 3D-CNN: `stage="cnn"` without the spectral branch), and two scikit-learn baselines
on spectra, `linear` (softmax regression) and `svm` (RBF-SVM, small CV grid): per object
image on its mean spectrum, per pixel on scenes. Every method of a (dataset, seed) uses the
split.json of the `default` run.

Each finished (dataset, method, seed) is cached as JSON under --work, so an interrupted run
resumes (--fresh ignores the cache). The results go to benchmarks/results/accuracy.json and to
the marked section of docs/results.md. --semantics runs the second study instead: on the object
datasets with 3, 5 and 10 training images per class, S3FN against the same pipeline without
semantics and with corrupted descriptions, as paired per-seed differences.
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

from benchmarks.accuracy_data import DEFAULT_REAL_DIR, OBJECT_KIND
from benchmarks.accuracy_plan import (
    DATASETS,
    DEFAULT_SEEDS,
    METHODS,
    OBJECT_TRAIN,
    OBJECT_VAL,
    PROTOCOLS,
    QUICK,
    REGION_SIDE,
    SCENE_TRAIN,
    SEMANTIC_METHODS,
    SEMANTIC_TRAIN,
    plan,
    select,
)
from benchmarks.accuracy_render import REPO, write_outputs
from benchmarks.accuracy_runner import Suite
from benchmarks.description_corruption import MIXED_FRACTION
from benchmarks.sklearn_baselines import SVM_GRID
from s3fn.config import TrainConfig

RESULTS = REPO / "benchmarks" / "results" / "accuracy.json"
DOCS = REPO / "docs" / "results.md"


def _shown(path: Path) -> str:
    """`path` relative to the repository when inside it, else as given."""
    resolved = path.resolve()
    return str(resolved.relative_to(REPO) if resolved.is_relative_to(REPO) else path)


def default_work() -> Path:
    """The benchmark's cache: `$S3FN_BENCH_CACHE`, else `$XDG_CACHE_HOME/s3fn-bench`, else
    `~/.cache/s3fn-bench`."""
    if os.environ.get("S3FN_BENCH_CACHE"):
        return Path(os.environ["S3FN_BENCH_CACHE"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base).expanduser() / "s3fn-bench"


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.accuracy",
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__.split("\n\n", 2)[2],
    )
    parser.add_argument("--datasets", nargs="+", choices=DATASETS, help="default: all")
    parser.add_argument(
        "--methods",
        nargs="+",
        choices=sorted({*METHODS, *SEMANTIC_METHODS}),
        help="default: all of the table's (default always runs: its split is the others')",
    )
    parser.add_argument(
        "--counts",
        nargs="+",
        type=int,
        help=f"training images per class of the semantics study (default {SEMANTIC_TRAIN})",
    )
    parser.add_argument(
        "--protocols",
        nargs="+",
        choices=PROTOCOLS,
        help="how scenes are labelled and scored (default: all; objects always hold out images)",
    )
    parser.add_argument("--seeds", type=int, help=f"seeds 0..N-1 (default {DEFAULT_SEEDS})")
    parser.add_argument("--quick", action="store_true", help="a ~5-minute check (see QUICK)")
    parser.add_argument(
        "--semantics",
        action="store_true",
        help=f"the semantics study instead (object datasets, {SEMANTIC_TRAIN} images per class)",
    )
    parser.add_argument("--fresh", action="store_true", help="ignore the cached cells")
    parser.add_argument(
        "--cached-only",
        action="store_true",
        help="report the cached cells only; list the others as not run",
    )
    parser.add_argument("--work", type=Path, default=default_work(), help="cache and run folders")
    parser.add_argument(
        "--real-data", type=Path, default=DEFAULT_REAL_DIR, help="folder of the real scenes' .npz"
    )
    parser.add_argument("--output", type=Path, default=RESULTS, help="the JSON results file")
    parser.add_argument("--docs", type=Path, default=DOCS, help="the Markdown file to update")
    args = parser.parse_args(argv)
    if args.seeds is not None and args.seeds < 1:
        parser.error("--seeds must be >= 1")
    table = SEMANTIC_METHODS if args.semantics else METHODS
    stray = [m for m in args.methods or () if m not in table]
    if stray:
        parser.error(f"method {stray[0]!r} is not in this table; expected {', '.join(table)}")
    if args.counts and not args.semantics:
        parser.error("--counts sets the training sizes of --semantics")
    return args


# Options that say where this machine keeps things, not what is measured.
MACHINE_OPTIONS = ("--work", "--real-data", "--output", "--docs")
MODE_FLAGS = ("--cached-only", "--fresh")


def portable_command(argv: Sequence[str]) -> str:
    """The command that remakes these numbers on any machine, run from the repository root:
    `argv` without this machine's folders and without the cache modes."""
    kept: list[str] = []
    skip = False
    for arg in argv:
        if skip:
            skip = False
            continue
        name = arg.split("=", 1)[0]
        if name in MACHINE_OPTIONS:
            skip = "=" not in arg
            continue
        if name not in MODE_FLAGS:
            kept.append(arg)
    return shlex.join(["python", "-m", "benchmarks.accuracy", *kept])


def main(argv: Sequence[str] | None = None) -> None:
    """Run the selected table's cells, then write the JSON and the docs section."""
    args = parse_args(argv)
    chosen = select(args)
    overrides = {"epochs": QUICK.epochs, "semantic_epochs": QUICK.epochs} if args.quick else {}
    if args.semantics:  # the study compares networks: keep each, whatever the linear model scores
        overrides["compare_linear"] = False
    if args.quick:
        print(QUICK.describe(chosen.table), flush=True)
    suite = Suite(args, overrides)
    for name, why in chosen.skipped.items():
        suite.skipped[name] = why
        print(f"skip {name}: {why}", flush=True)
    names = suite.prepare(chosen.datasets)
    defaults = TrainConfig()
    sizes = {
        name: [(float(c), float(OBJECT_VAL), "blocks") for c in chosen.counts]
        if suite.datasets[name].kind == OBJECT_KIND
        else [
            (SCENE_TRAIN, float(defaults.val), "blocks")
            if protocol == "blocks"
            else (None, float(defaults.val), protocol)
            for protocol in chosen.protocols
        ]
        for name in names
    }
    cells = plan(names, chosen.methods, chosen.seeds, sizes)
    print(
        f"{len(cells)} runs: {', '.join(names)} x {', '.join(chosen.methods)} x {chosen.seeds} "
        f"seeds (default runs first: its split.json is every method's); cache {args.work}",
        flush=True,
    )
    results = suite.run(cells, with_train=args.semantics)
    settings = {
        "command": portable_command(argv or sys.argv[1:]),
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "quick": QUICK.describe(chosen.table) if args.quick else None,
        "datasets": names,
        "methods": chosen.methods,
        "seeds": chosen.seeds,
        "object_train": list(chosen.counts) if args.semantics else OBJECT_TRAIN,
        "object_val": OBJECT_VAL,
        "scene_train": SCENE_TRAIN,
        "scene_val": defaults.val,
        "protocols": list(chosen.protocols),
        "region_side": REGION_SIDE,
        "overrides": overrides,
        "split_reused": "split" in suite.fields,
        "mixed_fraction": MIXED_FRACTION,
        "svm_grid": SVM_GRID,
        "work": str(args.work),
        "output": _shown(args.output),
        "real_data": str(args.real_data),
        "skipped": suite.skipped,
    }
    text = write_outputs(chosen.table, results, settings, args.output, args.docs)
    print(text)
    print(
        f"wrote {args.output} (key {chosen.table!r}) and the {chosen.table} section of {args.docs}"
    )


if __name__ == "__main__":
    main()
