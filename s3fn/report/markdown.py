"""`report.md` of a run: the scores, per-class tables, the pictures and the configuration."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from s3fn.evaluate.metrics import Report
from s3fn.evaluate.predict import Evaluation
from s3fn.report import plots

REPORT_FILE = "report.md"


@dataclass(frozen=True, eq=False)
class SceneMaps:
    """A predicted H x W map of class indices (-1 = not predicted) and its H x W ground truth
    (0 = unlabelled, k = class k - 1)."""

    predicted: np.ndarray
    truth: np.ndarray


def main_report(evaluation: Evaluation) -> tuple[str, Report]:
    """The level that scores the task: image-level after voting, else window (pixel) level."""
    if evaluation.images is not None:
        return "image", evaluation.images
    return "window", evaluation.windows


def write_report(
    folder: str | os.PathLike,
    results: Mapping[str, Evaluation],
    *,
    title: str,
    histories: Mapping[str, plots.History] | None = None,
    config: Mapping[str, Any] | None = None,
    scene: SceneMaps | None = None,
    notes: Sequence[str] = (),
) -> Path:
    """Write `report.md` and its PNGs into `folder`; `results` maps method name -> evaluation
    (none: a run without a test part, reported by its `notes` and curves alone)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    if not results and not notes:
        raise ValueError("write_report: no results or notes to report")
    lines = [f"# {title}", "", *notes]
    pictures = []
    if histories and any(any(h.values()) for h in histories.values()):
        pictures.append(
            ("Training curves", plots.training_curves(histories, folder / "curves.png"))
        )
    reports = {name: main_report(ev)[1] for name, ev in results.items()}
    level = main_report(next(iter(results.values())))[0] if results else "window"
    if results:
        lines += [*([""] if notes else []), "## Scores", "", *score_table(results)]
        pictures.append(
            ("Per-class F1", plots.per_class_f1(reports, folder / "f1.png", f"{level}-level F1"))
        )
    for i, (name, report) in enumerate(reports.items()):
        path = folder / f"confusion_{i}_{_slug(name)}.png"
        pictures.append(
            (f"Confusion matrix: {name}", plots.confusion(report, path, f"{name} ({level} level)"))
        )
    if scene is not None:
        names = next(iter(reports.values())).class_names
        path = plots.scene_maps(scene.predicted, scene.truth, names, folder / "scene_map.png")
        pictures.append(("Predicted map beside the ground truth", path))
    for name, report in reports.items():
        lines += ["", f"## Per class: {name} ({level} level)", "", *per_class_table(report)]
    for caption, path in pictures:
        lines += ["", f"## {caption}", "", f"![{caption}]({path.name})"]
    if config is not None:
        lines += ["", "## Configuration", "", "```json", json.dumps(config, indent=2), "```"]
    path = folder / REPORT_FILE
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def score_table(results: Mapping[str, Evaluation]) -> list[str]:
    """Markdown rows: OA / AA / kappa / macro-F1 (%) per method, image and window level."""
    lines = [
        "| method | level | OA | AA | kappa | macro-F1 | samples |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, evaluation in results.items():
        levels = [("image", evaluation.images), ("window", evaluation.windows)]
        for level, report in levels:
            if report is None:
                continue
            values = [100 * v for v in (report.oa, report.aa, report.kappa, report.macro_f1)]
            cells = " | ".join(f"{v:.2f}" for v in values)
            lines.append(f"| {name} | {level} | {cells} | {report.total} |")
    return lines


def per_class_table(report: Report) -> list[str]:
    """Markdown rows: precision / recall / F1 / support of every class."""
    lines = ["| class | precision | recall | F1 | support |", "|---|---|---|---|---|"]
    for name, p, r, f, s in zip(
        report.class_names, report.precision, report.recall, report.f1, report.support, strict=True
    ):
        lines.append(f"| {name} | {p:.3f} | {r:.3f} | {f:.3f} | {s} |")
    return lines


def _slug(name: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in name.lower()).strip("-")[:40]
