"""The accuracy suite: S3FN with its default options against the paper's recipe and baselines.

    python -m benchmarks.accuracy [--quick] [--datasets NAME ...] [--methods NAME ...]
                                  [--seeds N] [--semantics] [--fresh] [--cached-only]

Datasets: the built-in object data and scene (`materials`, `materials-scene`), small objects
stored as raw uint16 images with their water-absorption bands (`small-objects`, made by
`benchmarks.accuracy_data`), and three real airborne scenes (`samson`, `jasper-ridge`,
`moffett`, from shared/data/real; skipped when that folder is missing).

Methods: `default` (what a user's first `s3fn train` does: `s3fn.cli.train.train_run` with the
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
import contextlib
import dataclasses
import hashlib
import io
import json
import os
import platform
import shlex
import shutil
import subprocess
import sys
import time
import warnings
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml

from benchmarks.accuracy_data import (
    DEFAULT_REAL_DIR,
    OBJECT_KIND,
    REAL_SCENES,
    BenchData,
    builtin_data,
    real_scene_data,
    small_objects_data,
)
from benchmarks.accuracy_stats import CONFIDENCE, summaries_and_pairs
from benchmarks.description_corruption import CORRUPTIONS, MIXED_FRACTION, corrupt
from benchmarks.sklearn_baselines import (
    SVM_GRID,
    fit_linear,
    fit_svm,
    object_spectra,
    split_samples,
)
from s3fn.cli.datasets import SPLIT_FILE, open_data
from s3fn.cli.embeddings import read_descriptions
from s3fn.cli.outputs import METRICS_FILE
from s3fn.cli.progress import Progress
from s3fn.cli.train import BUNDLE_DIR, train_run
from s3fn.config import CONFIG_FILE, TrainConfig, option_fields
from s3fn.data.datasets import ObjectDataset, SceneDataset
from s3fn.evaluate import Report
from s3fn.semantics import save_descriptions

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results" / "accuracy.json"
DOCS = REPO / "docs" / "results.md"
DATASETS = ("materials", "small-objects", "materials-scene", "samson", "jasper-ridge", "moffett")
OBJECT_DATASETS = ("materials", "small-objects")
METHODS = ("default", "paper", "cnn", "linear", "svm")
# Other ways the text can shape learning, beside the default's read-out.
TEXT_VARIANTS = ("joint", "learnable-prototypes", "text-targets", "paper-head")
SEMANTIC_METHODS = ("default", "no-semantics", *TEXT_VARIANTS, *CORRUPTIONS)
SKLEARN_METHODS = ("linear", "svm")
# What each training method changes in the default `TrainConfig`.
TRAIN_CHANGES: dict[str, dict[str, Any]] = {
    "default": {},
    "paper": {"preset": "paper"},
    "cnn": {"stage": "cnn", "spectral_branch": False},
    "no-semantics": {"stage": "cnn"},
    "joint": {"stage": "joint"},
    "learnable-prototypes": {"prototypes": "learnable"},
    "text-targets": {"text_targets": 0.1},
    "paper-head": {"temperature": "fixed", "init_scale": 1.0},
    **{name: {} for name in CORRUPTIONS},
}
LABELS = {
    "default": "S3FN, default options",
    "paper": "S3FN, paper preset",
    "cnn": "plain 3D-CNN (stage cnn, no spectral branch)",
    "no-semantics": "the default without semantics (stage cnn)",
    "joint": "S3FN trained end to end (stage joint)",
    "learnable-prototypes": "S3FN, class prototypes initialised from the text, then learnt",
    "text-targets": "S3FN, CNN stage targets softened by text similarity (0.1)",
    "paper-head": "S3FN, the paper's plain cosine (fixed scale 1)",
    "linear": "softmax regression on spectra",
    "svm": "RBF-SVM on spectra",
    "mixed": "S3FN, half of each class's sentences from other classes",
    "first-sentence": "S3FN, descriptions cut to their first sentence",
    "swapped": "S3FN, every class given another class's text",
}
SEMANTIC_LABELS = {**LABELS, "default": "S3FN"}
OBJECT_TRAIN, OBJECT_VAL = 5, 2
SEMANTIC_TRAIN = (3, 5, 10)
DEFAULT_SEEDS = 5
CELL_VERSION = 1  # part of every cache key: raise it when a cell comes to mean something else
NO_SPLIT = "not written by the default run of this seed (--fresh remakes a deleted one)"


@dataclass(frozen=True)
class Quick:
    """What --quick changes: fewer datasets and seeds, a few epochs, fewer training sizes."""

    datasets: tuple[str, ...] = ("small-objects", "moffett")
    semantic_datasets: tuple[str, ...] = ("small-objects",)
    seeds: int = 2
    epochs: int = 1
    semantic_train: tuple[int, ...] = (OBJECT_TRAIN,)

    def describe(self, table: str) -> str:
        """One sentence on what quick changed (for the output and the docs)."""
        datasets = self.semantic_datasets if table == "semantics" else self.datasets
        text = (
            f"--quick: datasets {', '.join(datasets)} unless --datasets is given, {self.seeds} "
            f"seeds unless --seeds is given, at most {self.epochs} "
            f"epoch{'s' if self.epochs != 1 else ''} per stage"
        )
        if table == "semantics":
            sizes = " and ".join(map(str, self.semantic_train))
            text += f", {sizes} training images per class only"
        return text + "; a check that the suite runs, not a measurement"


QUICK = Quick()


@dataclass(frozen=True)
class Cell:
    """One (dataset, training size, method, seed) run: the unit that is cached."""

    dataset: str
    method: str
    seed: int
    train: float
    val: float

    def recipe(self, overrides: Mapping[str, Any]) -> dict[str, Any]:
        """Everything that decides this cell's result, as hashed into its cache key."""
        return {**dataclasses.asdict(self), "overrides": dict(overrides), "version": CELL_VERSION}

    def key(self, overrides: Mapping[str, Any]) -> str:
        """The cell's file and run-folder name: readable fields and a hash of the recipe."""
        text = json.dumps(self.recipe(overrides), sort_keys=True)
        digest = hashlib.sha1(text.encode()).hexdigest()[:10]
        return f"{self.dataset}-{self.method}-t{self.train:g}-v{self.val:g}-s{self.seed}-{digest}"

    def default_cell(self) -> Cell:
        """The `default` cell of the same dataset, training size and seed: its split is ours."""
        return dataclasses.replace(self, method="default")


def mean_std(summary: Mapping[str, Any], metric: str, *, factor: float, digits: int) -> str:
    """ "mean ± std" of a summary's metric (the mean alone for one seed; "-" for none)."""
    if not summary["seeds"]:
        return "-"
    mean = f"{summary['mean'][metric] * factor:.{digits}f}"
    if len(summary["seeds"]) < 2:
        return mean
    return f"{mean} ± {summary['std'][metric] * factor:.{digits}f}"


def format_difference(diff: Mapping[str, Any] | None) -> tuple[str, str, str, str]:
    """(mean, interval, seeds, per-seed values) of a paired OA difference, in points."""
    if diff is None:
        return "-", "-", "0", "-"
    low, high = diff["low"], diff["high"]
    interval = "-" if low is None else f"[{100 * low:+.2f}, {100 * high:+.2f}]"
    per_seed = ", ".join(f"{100 * d:+.2f}" for d in diff["diffs"])
    return f"{100 * diff['mean']:+.2f}", interval, str(len(diff["diffs"])), per_seed


def markdown(header: Sequence[str], rows: Iterable[Sequence[str]]) -> str:
    """A Markdown table."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def replace_section(text: str, name: str, body: str) -> str:
    """`text` with the part between `<!-- name:begin -->` and `<!-- name:end -->` replaced by
    `body`; the markers and body are appended at the end when the markers are missing."""
    begin, end = f"<!-- {name}:begin -->", f"<!-- {name}:end -->"
    block = f"{begin}\n{body.strip()}\n{end}"
    start = text.find(begin)
    stop = text.find(end, start + len(begin)) if start >= 0 else -1
    if start < 0 or stop < 0:
        return text.rstrip("\n") + "\n\n" + block + "\n"
    return text[:start] + block + text[stop + len(end) :]


def metrics_of(folder: Path) -> dict[str, Any]:
    """OA / AA / kappa / macro-F1, level, test count and training time from a run's files."""
    metrics = json.loads((folder / METRICS_FILE).read_text())
    level = "image" if metrics.get("image") else "window"
    report = metrics[level]
    config = yaml.safe_load((folder / CONFIG_FILE).read_text())
    return {
        "oa": report["oa"],
        "aa": report["aa"],
        "kappa": report["kappa"],
        "macro_f1": report["macro_f1"],
        "level": "image" if level == "image" else "pixel",
        "n_test": report["total"],
        "train_seconds": metrics["train_seconds"],
        "epochs": {stage: len(h) for stage, h in (metrics.get("histories") or {}).items()},
        "config": config,
    }


class Suite:
    """Runs (or reads from the cache) the cells of one table and keeps their results."""

    def __init__(self, args: argparse.Namespace, overrides: Mapping[str, Any]) -> None:
        self.work: Path = args.work
        self.real_dir: Path = args.real_data
        self.fresh: bool = args.fresh
        self.cached_only: bool = args.cached_only
        self.overrides = dict(overrides)
        self.fields = {f.name for f in option_fields()}
        self.datasets: dict[str, BenchData] = {}
        self.skipped: dict[str, str] = {}
        self._opened: dict[str, ObjectDataset | SceneDataset] = {}
        self._spectra: dict[str, dict[str, np.ndarray]] = {}

    def prepare(self, names: Sequence[str]) -> list[str]:
        """Make or find each dataset; returns those available, noting why others are not."""
        cache = self.work / "data"
        for name in names:
            if name in self.datasets:
                continue
            if name in REAL_SCENES:
                try:
                    self.datasets[name] = real_scene_data(name, self.real_dir, cache)
                except FileNotFoundError as exc:
                    self.skipped[name] = f"real data missing ({exc}); pass --real-data DIR"
                    print(f"skip {name}: {self.skipped[name]}", flush=True)
            elif name == "small-objects":
                self.datasets[name] = small_objects_data(cache)
            else:
                self.datasets[name] = builtin_data(name)
        return [n for n in names if n in self.datasets]

    def cell_path(self, cell: Cell) -> Path:
        """Where the cell's result is cached."""
        return self.work / "cells" / f"{cell.key(self.overrides)}.json"

    def run_dir(self, cell: Cell) -> Path:
        """The run folder of a training cell."""
        return self.work / "runs" / cell.key(self.overrides)

    def run(self, cells: Sequence[Cell], *, with_train: bool) -> list[dict[str, Any]]:
        """Every cell in order, from the cache when it holds it; a progress line each (naming
        the training size too `with_train`)."""
        results = []
        width = len(str(len(cells)))
        for i, cell in enumerate(cells, 1):
            path = self.cell_path(cell)
            cached = not self.fresh and path.is_file()
            if cached:
                result = json.loads(path.read_text())
            elif self.cached_only:
                base = {**dataclasses.asdict(cell), "key": cell.key(self.overrides)}
                result = {**base, "status": "not run", "reason": "not in the cache (--cached-only)"}
            else:
                result = self.compute(cell)
            if result["status"] == "ok" and not cached:
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(json.dumps(result, indent=2) + "\n")
            results.append(result)
            size = f" / train {cell.train:g}" if with_train else ""
            where = f"{cell.dataset}{size} / {cell.method} / seed {cell.seed}"
            if result["status"] == "ok":
                note = " (cached)" if cached else ""
                line = (
                    f"OA {100 * result['oa']:6.2f}  train {result['train_seconds']:7.1f} s  "
                    f"total {result['wall_seconds']:7.1f} s{note}"
                )
            else:
                line = f"{result['status'].upper()}: {result['reason']}"
            print(f"[{i:>{width}}/{len(cells)}] {where}: {line}", flush=True)
        return results

    def compute(self, cell: Cell) -> dict[str, Any]:
        """Run one cell; failures and missing features come back as results, not exceptions."""
        base = {**dataclasses.asdict(cell), "key": cell.key(self.overrides)}
        changes = self.config_changes(cell)
        missing = [k for k in changes if k not in self.fields]
        if missing:
            reason = f"TrainConfig has no field {missing[0]!r} yet"
            return {**base, "status": "unavailable", "reason": reason}
        start = time.perf_counter()
        try:
            if cell.method in SKLEARN_METHODS:
                result = self.fit_baseline(cell)
            else:
                result = self.train(cell, changes)
        except Exception as exc:  # a failing cell is a result of the suite, not its end
            reason = " ".join(f"{type(exc).__name__}: {exc}".split())
            return {**base, "status": "failed", "reason": reason}
        return {
            **base,
            "status": "ok",
            **result,
            "wall_seconds": round(time.perf_counter() - start, 1),
        }

    def config_changes(self, cell: Cell) -> dict[str, Any]:
        """What the cell's method changes in the `TrainConfig` of the `default` run."""
        if cell.method in SKLEARN_METHODS:
            return {}
        changes = dict(TRAIN_CHANGES[cell.method])
        if cell.method != "default" and "split" in self.fields:
            changes["split"] = str(self.split_file(cell))
        return changes

    def split_file(self, cell: Cell) -> Path:
        """The split.json of the cell's `default` run, shared by every method of the seed."""
        return self.run_dir(cell.default_cell()) / SPLIT_FILE

    def opened(self, name: str) -> ObjectDataset | SceneDataset:
        """The dataset as the package opens it (kept for the baselines)."""
        if name not in self._opened:
            bench = self.datasets[name]
            fields = bench.config_fields()
            self._opened[name] = open_data(
                bench.data, labels=fields.get("labels"), classes=fields.get("classes")
            )
        return self._opened[name]

    def train(self, cell: Cell, changes: Mapping[str, Any]) -> dict[str, Any]:
        """`train_run` as a user's `s3fn train` with the cell's options; its test metrics."""
        bench = self.datasets[cell.dataset]
        fields = {
            **bench.config_fields(),
            "seed": cell.seed,
            "train": cell.train,
            "val": cell.val,
            **self.overrides,
            **changes,
        }
        if cell.method in CORRUPTIONS:
            fields["descriptions"] = str(self.corrupted_descriptions(cell))
        if "split" in fields and not Path(fields["split"]).is_file():
            raise FileNotFoundError(f"{fields['split']}: {NO_SPLIT}")
        folder = self.run_dir(cell)
        shutil.rmtree(folder, ignore_errors=True)
        captured = io.StringIO()
        try:
            with (
                contextlib.redirect_stdout(captured),
                warnings.catch_warnings(record=True) as caught,
            ):
                warnings.simplefilter("always")
                train_run(TrainConfig(**fields), folder, resume=False, progress=Progress(True))
        finally:
            if folder.is_dir():
                (folder / "stdout.txt").write_text(captured.getvalue())
        result = metrics_of(folder)
        result["chosen"] = [
            line.removeprefix("chose ")
            for line in captured.getvalue().splitlines()
            if line.startswith("chose ")
        ]
        result["warnings"] = sorted({str(w.message) for w in caught})
        for bulky in (BUNDLE_DIR, "checkpoints"):
            shutil.rmtree(folder / bulky, ignore_errors=True)
        return result

    def corrupted_descriptions(self, cell: Cell) -> Path:
        """Write the cell's corrupted descriptions of the dataset's classes; returns the file."""
        bench = self.datasets[cell.dataset]
        names = self.opened(cell.dataset).class_names
        original = read_descriptions(bench.descriptions).select(names)
        path = self.work / "descriptions" / f"{cell.dataset}-{cell.method}-s{cell.seed}.yaml"
        path.parent.mkdir(parents=True, exist_ok=True)
        return save_descriptions(path, corrupt(original, cell.method, cell.seed))

    def fit_baseline(self, cell: Cell) -> dict[str, Any]:
        """A scikit-learn baseline on the spectra of the default run's split; its metrics."""
        split = self.split_file(cell)
        if not split.is_file():
            raise FileNotFoundError(f"{split}: {NO_SPLIT}")
        data = self.opened(cell.dataset)
        if isinstance(data, ObjectDataset) and cell.dataset not in self._spectra:
            self._spectra[cell.dataset] = object_spectra(data)
        saved = json.loads(split.read_text())
        x, y, x_test, y_test = split_samples(data, saved, self._spectra.get(cell.dataset, {}))
        fit = fit_linear if cell.method == "linear" else fit_svm
        start = time.perf_counter()
        model = fit(x, y, cell.seed)
        seconds = time.perf_counter() - start
        report = Report.from_labels(y_test, model.predict(x_test), data.class_names)
        chosen = {k: v for k, v in model.get_params().items() if k in ("svc__C", "svc__gamma")}
        return {
            **report.scalars(),
            "level": "image" if isinstance(data, ObjectDataset) else "pixel",
            "n_test": report.total,
            "train_seconds": round(seconds, 2),
            "params": chosen,
        }


def plan(
    datasets: Sequence[str],
    methods: Sequence[str],
    seeds: int,
    sizes: Mapping[str, Sequence[tuple[float, float]]],
) -> list[Cell]:
    """The cells in run order: per dataset, training size and seed, `default` first."""
    ordered = ["default", *[m for m in methods if m != "default"]]
    return [
        Cell(dataset, method, seed, train, val)
        for dataset in datasets
        for train, val in sizes[dataset]
        for seed in range(seeds)
        for method in ordered
    ]


def render(
    groups: Sequence[Mapping[str, Any]],
    labels: Mapping[str, str],
    *,
    with_train: bool,
) -> tuple[str, str]:
    """(summary table, paired-difference table) in Markdown."""
    first = ["dataset", *(["train / class"] if with_train else []), "method"]
    rows, pair_rows = [], []
    for group in groups:
        where = [group["dataset"], *([f"{group['train']:g}"] if with_train else [])]
        for method, s in group["methods"].items():
            seeds = str(len(s["seeds"]))
            if s["failed"] or s["unavailable"]:
                seeds += f" ({s['failed']} failed, {s['unavailable']} unavailable)"
            rows.append(
                [
                    *where,
                    labels[method],
                    mean_std(s, "oa", factor=100, digits=2),
                    mean_std(s, "aa", factor=100, digits=2),
                    mean_std(s, "kappa", factor=100, digits=2),
                    mean_std(s, "train_seconds", factor=1, digits=1),
                    seeds,
                ]
            )
        for method, diff in group["paired"].items():
            pair_rows.append([*where, labels[method], *format_difference(diff)])
    summary = markdown(
        [*first, "OA (%)", "AA (%)", "kappa (x100)", "train time (s)", "seeds"], rows
    )
    paired = markdown(
        [*first, "ΔOA (points)", f"{CONFIDENCE:.0%} interval", "seeds", "per seed"], pair_rows
    )
    return summary, paired


def machine() -> dict[str, Any]:
    """The machine, the library versions and the source revision the results come from."""
    from benchmarks.run import machine_info

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    info = machine_info(device)
    info["platform"] = platform.platform()
    for name in ("numpy", "scipy", "scikit-learn", "s3fn"):
        try:
            info[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            info[name] = None
    info["commit"] = _git("rev-parse", "HEAD")
    info["uncommitted_changes"] = bool(_git("status", "--porcelain", "--untracked-files=no"))
    return info


def _git(*args: str) -> str | None:
    try:
        done = subprocess.run(
            ["git", *args], cwd=REPO, capture_output=True, text=True, check=True, timeout=30
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip()


def section(
    table: str,
    groups: Sequence[Mapping[str, Any]],
    info: Mapping[str, Any],
    settings: Mapping[str, Any],
) -> str:
    """The Markdown of one table's marked section of docs/results.md."""
    semantic = table == "semantics"
    labels = SEMANTIC_LABELS if semantic else LABELS
    summary, paired = render(groups, labels, with_train=semantic)
    commit = (info.get("commit") or "unknown")[:10]
    dirty = " with uncommitted changes" if info.get("uncommitted_changes") else ""
    device = info.get("gpu") or f"{info['cpu']}, {info['cores']} cores"
    title = "S3FN with and without label semantics" if semantic else "Accuracy suite"
    lines = [
        f"## {title}",
        "",
        f"Made by `{settings['command']}` on {settings['date'][:10]}: {device}, torch "
        f"{info['torch']}, s3fn {info.get('s3fn')} at {commit}{dirty}. Every number and the "
        f"settings are in `{settings['output']}` (key `{table}`).",
        "",
    ]
    if settings.get("quick"):
        lines += [f"**Quick run.** {settings['quick']}.", ""]
    if semantic:
        lines += [
            f"Object datasets, {settings['object_val']} validation images per class, the rest "
            "tested, scored per image. Every row of a (dataset, training size, seed) trains on "
            "the split of its S3FN run. Corrupted descriptions come from the class "
            "descriptions through s3fn.semantics.ablations, seeded by the run's seed: `mixed` "
            f"replaces {MIXED_FRACTION:.0%} of each class's sentences with sentences of other "
            "classes, `first-sentence` keeps only the first sentence, `swapped` gives every "
            "class another class's paragraphs (class names renamed, so label-token pooling "
            "still finds them).",
        ]
    else:
        lines += [
            f"Objects: {settings['object_train']} training and {settings['object_val']} "
            "validation images per class, the rest tested, scored per image (networks: vote of "
            "their windows; linear / SVM: the image's mean spectrum). Scenes: the package's "
            f"spatially disjoint split (train {settings['scene_train']:g}, validation "
            f"{settings['scene_val']:g} of the labelled pixels), scored per test pixel. All "
            "methods of a (dataset, seed) use the split.json of its `default` run.",
        ]
    lines += [""]
    lines += [
        f"Mean ± sample standard deviation over seeds ({settings['seeds']} asked). Train time: "
        "seconds of `train_classifier` (windows, PCA and training) or of the scikit-learn fit.",
        "",
        summary,
        "",
        f"Paired per-seed OA difference, {labels['default']} minus each method, in points, with "
        f"the {CONFIDENCE:.0%} t-interval of its mean (positive: {labels['default']} is better):",
        "",
        paired,
        "",
    ]
    notes = [f"- {name}: skipped, {why}" for name, why in settings["skipped"].items()]
    notes += [
        f"- {r['dataset']} / {r['method']} / train {r['train']:g} / seed {r['seed']}: "
        f"{r['status']}, {r['reason'][:300]}"
        for r in settings["not_ok"]
    ]
    if notes:
        lines += ["Not in the tables:", "", *notes, ""]
    return "\n".join(lines)


def write_outputs(
    table: str,
    results: Sequence[Mapping[str, Any]],
    settings: dict[str, Any],
    output: Path,
    docs: Path,
) -> str:
    """Update `table`'s key of the JSON file and its section of the docs; returns the section."""
    groups = summaries_and_pairs(results)
    info = machine()
    settings["not_ok"] = [
        {k: r[k] for k in ("dataset", "method", "train", "seed", "status", "reason")}
        for r in results
        if r["status"] != "ok"
    ]
    text = section(table, groups, info, settings)
    existing = json.loads(output.read_text()) if output.is_file() else {}
    existing[table] = {
        "machine": info,
        "settings": settings,
        "cells": list(results),
        "summaries": groups,
        "markdown": text,
    }
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(existing, indent=2) + "\n")
    old = docs.read_text() if docs.is_file() else ""
    docs.write_text(replace_section(old, table, text))
    return text


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


@dataclass(frozen=True)
class Selection:
    """What one invocation runs: its table, datasets, methods, training sizes and seeds."""

    table: str
    datasets: list[str]
    methods: list[str]
    counts: tuple[int, ...]
    seeds: int
    skipped: dict[str, str]


def select(args: argparse.Namespace) -> Selection:
    """The table, datasets, methods (`default` first, always), sizes and seeds asked for."""
    seeds = args.seeds or (QUICK.seeds if args.quick else DEFAULT_SEEDS)
    if not args.semantics:
        wanted = args.datasets or (QUICK.datasets if args.quick else DATASETS)
        methods = ["default", *[m for m in args.methods or METHODS if m != "default"]]
        return Selection("accuracy", list(wanted), methods, (OBJECT_TRAIN,), seeds, {})
    wanted = args.datasets or (QUICK.semantic_datasets if args.quick else OBJECT_DATASETS)
    why = "the semantics study uses the object datasets only"
    counts = args.counts or (QUICK.semantic_train if args.quick else SEMANTIC_TRAIN)
    return Selection(
        "semantics",
        [n for n in wanted if n in OBJECT_DATASETS],
        ["default", *[m for m in args.methods or SEMANTIC_METHODS if m != "default"]],
        tuple(counts),
        seeds,
        {n: why for n in wanted if n not in OBJECT_DATASETS},
    )


def main(argv: Sequence[str] | None = None) -> None:
    """Run the selected table's cells, then write the JSON and the docs section."""
    args = parse_args(argv)
    chosen = select(args)
    overrides = {"epochs": QUICK.epochs, "semantic_epochs": QUICK.epochs} if args.quick else {}
    if args.quick:
        print(QUICK.describe(chosen.table), flush=True)
    suite = Suite(args, overrides)
    for name, why in chosen.skipped.items():
        suite.skipped[name] = why
        print(f"skip {name}: {why}", flush=True)
    names = suite.prepare(chosen.datasets)
    defaults = TrainConfig()
    sizes = {
        name: [
            (float(c), float(OBJECT_VAL))
            if suite.datasets[name].kind == OBJECT_KIND
            else (float(defaults.train), float(defaults.val))
            for c in chosen.counts
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
        "command": shlex.join(["python", "-m", "benchmarks.accuracy", *(argv or sys.argv[1:])]),
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "quick": QUICK.describe(chosen.table) if args.quick else None,
        "datasets": names,
        "methods": chosen.methods,
        "seeds": chosen.seeds,
        "object_train": list(chosen.counts) if args.semantics else OBJECT_TRAIN,
        "object_val": OBJECT_VAL,
        "scene_train": defaults.train,
        "scene_val": defaults.val,
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
