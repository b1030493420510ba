"""The accuracy suite's runner: each cell trained through `train_run` (or fitted as a
scikit-learn baseline) on the split of its `default` run, or on one side of a scene and scored
on the other, cached as JSON under the work folder."""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import io
import json
import shutil
import time
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from benchmarks.accuracy_data import (
    REAL_SCENES,
    BenchData,
    builtin_data,
    crop_fields_data,
    real_scene_data,
    small_objects_data,
)
from benchmarks.accuracy_plan import REGION_SIDE, SKLEARN_METHODS, TRAIN_CHANGES, Cell
from benchmarks.description_corruption import CORRUPTIONS, corrupt
from benchmarks.sklearn_baselines import fit_linear, fit_svm, object_spectra, samples_of
from s3fn.config import TrainConfig, option_fields
from s3fn.data.datasets import ObjectDataset, SceneDataset
from s3fn.data.defaults import scene_window
from s3fn.data.opening import open_data
from s3fn.data.split_files import load_split
from s3fn.data.splits import label_sides
from s3fn.evaluate import Report
from s3fn.inference import RUN_BUNDLE_DIR
from s3fn.progress import Progress
from s3fn.run_folder import CONFIG_FILE, METRICS_FILE, SPLIT_FILE
from s3fn.semantics import save_descriptions
from s3fn.semantics.class_embeddings import read_descriptions
from s3fn.train.run import train_run

NO_SPLIT = "not written by the default run of this seed (--fresh remakes a deleted one)"


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
            elif name == "crop-fields":
                self.datasets[name] = crop_fields_data(cache)
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
            size = f" / train {cell.train:g}" if with_train else f" / {cell.protocol}"
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

    def region_maps(self, cell: Cell) -> tuple[Path, Path]:
        """(labels of the side a user labels, labels of the side scored) of a region cell, as
        .npy label maps: REGION_SIDE of the columns (west) or rows (north), and the other side
        from half the default window beyond it on."""
        folder = self.work / "regions" / cell.dataset
        paths = folder / f"{cell.protocol}-labelled.npy", folder / f"{cell.protocol}-scored.npy"
        if not all(path.is_file() for path in paths):
            labels = self.opened(cell.dataset).labels
            gap = scene_window(labels.shape).value // 2 + 1
            sides = label_sides(labels, cell.protocol, REGION_SIDE, gap)
            folder.mkdir(parents=True, exist_ok=True)
            for path, side in zip(paths, sides, strict=True):
                np.save(path, side)
        return paths

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
        if cell.protocol != "blocks":
            labelled, scored = self.region_maps(cell)
            fields.update(labels=str(labelled), test_labels=str(scored))
            fields.setdefault("classes", self.opened(cell.dataset).class_names)
            if bench.data.startswith("builtin:"):
                fields["data"] = str(self.scene_cube(cell.dataset))
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
        for bulky in (RUN_BUNDLE_DIR, "checkpoints"):
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

    def scene_cube(self, name: str) -> Path:
        """A built-in scene's cube as .npy, for runs given label maps of their own."""
        path = self.work / "regions" / name / "cube.npy"
        if not path.is_file():
            path.parent.mkdir(parents=True, exist_ok=True)
            np.save(path, self.opened(name).cube.data)
        return path

    def baseline_parts(self, cell: Cell) -> tuple[np.ndarray, np.ndarray, SceneDataset | None]:
        """(training part, test part, the scene to read them from where it is not the
        dataset's own) of a baseline: what the default's final model trained on and was
        scored on."""
        data = self.opened(cell.dataset)
        if cell.protocol != "blocks":
            labelled, scored = (np.load(path) for path in self.region_maps(cell))
            both = np.where(scored > 0, scored, labelled)
            scene = SceneDataset(data.cube, both, data.class_names)
            return np.argwhere(labelled > 0), np.argwhere(scored > 0), scene
        split_file = self.split_file(cell)
        if not split_file.is_file():
            raise FileNotFoundError(f"{split_file}: {NO_SPLIT}")
        split = load_split(data, split_file)
        return split.final_training(), split.test, None

    def fit_baseline(self, cell: Cell) -> dict[str, Any]:
        """A scikit-learn baseline trained on the labels the default's final model trained
        on, scored on its test part; its metrics."""
        train, test, scene = self.baseline_parts(cell)
        data = scene or self.opened(cell.dataset)
        if isinstance(data, ObjectDataset) and cell.dataset not in self._spectra:
            self._spectra[cell.dataset] = object_spectra(data)
        x, y = samples_of(data, train, self._spectra.get(cell.dataset, {}))
        x_test, y_test = samples_of(data, test, self._spectra.get(cell.dataset, {}))
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
            "n_train": len(y),
            "train_seconds": round(seconds, 2),
            "params": chosen,
        }
