"""Scoring a classifier on data with progress, and writing metrics.json and the report."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from s3fn.data.datasets import ObjectDataset, SceneDataset
from s3fn.evaluate.predict import Evaluation
from s3fn.progress import CountingObjects, Progress
from s3fn.run_folder import METRICS_FILE

if TYPE_CHECKING:
    from s3fn.inference import Classifier
    from s3fn.report import SceneMaps


def score(
    classifier: Classifier,
    data: ObjectDataset | SceneDataset,
    part: np.ndarray | None,
    progress: Progress,
) -> Evaluation:
    """`classifier.evaluate` on `part` (images or pixels; None: all), with a bar over images."""
    if isinstance(data, SceneDataset):
        bar = progress.bar(None, "evaluating pixels", "px")
        evaluation = classifier.evaluate(data, part)
        bar.update(evaluation.windows.total)
        bar.close()
        return evaluation
    counting = CountingObjects(data)
    total = len(data) if part is None else len(part)
    with counting.counting(progress.bar(total, "evaluating", "image")):
        return classifier.evaluate(counting, part)


def scene_maps(classifier: Classifier, scene: SceneDataset, progress: Progress) -> SceneMaps:
    """The classifier's map of the scene's labelled pixels beside its ground truth."""
    from s3fn.report import SceneMaps

    bar = progress.bar(None, "mapping the scene", "map")
    predicted = classifier.predict_map(scene.cube, scene.labels > 0)
    bar.close()
    return SceneMaps(np.asarray(predicted), scene.labels)


def write_results(
    folder: Path,
    name: str,
    evaluation: Evaluation | None,
    *,
    title: str,
    histories: Mapping[str, Any] | None = None,
    config: Mapping[str, Any] | None = None,
    scene: SceneMaps | None = None,
    extra: Mapping[str, Any] | None = None,
    notes: Sequence[str] = (),
) -> list[Path]:
    """metrics.json and report.md (+ PNGs) in `folder`; returns the files written. Without an
    `evaluation` (no test part) the scores are null and the report holds `notes` and curves."""
    from s3fn.report import write_report  # matplotlib: only where a report is written

    folder.mkdir(parents=True, exist_ok=True)
    metrics = {
        "scalars": None if evaluation is None else evaluation.scalars(),
        "window": None if evaluation is None else evaluation.windows.to_dict(),
        "image": None
        if evaluation is None or evaluation.images is None
        else evaluation.images.to_dict(),
        **(extra or {}),
    }
    if histories is not None:
        metrics["histories"] = histories
    metrics_path = folder / METRICS_FILE
    metrics_path.write_text(json.dumps(metrics, indent=2, default=_plain) + "\n")
    report = write_report(
        folder,
        {} if evaluation is None else {name: evaluation},
        title=title,
        histories=None if histories is None else {name: histories},
        config=config,
        scene=scene,
        notes=notes,
    )
    return [metrics_path, report]


def summary_line(evaluation: Evaluation) -> str:
    """OA / AA / kappa at the scoring level, in percent."""
    report = evaluation.images if evaluation.images is not None else evaluation.windows
    level = "image" if evaluation.images is not None else "pixel"
    return (
        f"{level}-level OA {100 * report.oa:.2f}  AA {100 * report.aa:.2f}  "
        f"kappa {100 * report.kappa:.2f}  ({report.total} {level}s)"
    )


def _plain(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"not JSON-serialisable: {type(value).__name__}")
