"""The report's pictures, drawn headless (matplotlib Figures, no pyplot): curves, confusion,
per-class F1, label maps."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib
import numpy as np
from matplotlib.axes import Axes
from matplotlib.colors import ListedColormap
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from s3fn.evaluate.metrics import Report

History = Mapping[str, Sequence[Mapping[str, Any]]]
DPI = 110


def _save(figure: Figure, path: str | os.PathLike) -> Path:
    path = Path(path)
    figure.savefig(path, dpi=DPI)
    return path


def training_curves(histories: Mapping[str, History], path: str | os.PathLike) -> Path:
    """Loss (train, val) and validation accuracy per epoch, one row per method; stages follow
    each other on the epoch axis, separated by a dashed line."""
    methods = [m for m, h in histories.items() if any(h.values())]
    if not methods:
        raise ValueError("training_curves: no epoch records to plot")
    figure = Figure(figsize=(10, 3.2 * len(methods)), layout="tight")
    axes = figure.subplots(len(methods), 2, squeeze=False)
    for row, method in zip(axes, methods, strict=True):
        offset = 0
        for stage, records in histories[method].items():
            if not records:
                continue
            epochs = offset + np.array([r["epoch"] for r in records])
            row[0].plot(epochs, [r["train_loss"] for r in records], label=f"{stage} train")
            if "val_loss" in records[0]:
                row[0].plot(epochs, [r["val_loss"] for r in records], "--", label=f"{stage} val")
                row[1].plot(epochs, [r["val_accuracy"] for r in records], label=stage)
            if offset:
                for ax in row:
                    ax.axvline(offset + 0.5, color="grey", linestyle=":", linewidth=1)
            offset = int(epochs[-1])
        row[0].set(title=f"{method}: loss", xlabel="epoch", ylabel="cross-entropy")
        row[1].set(title=f"{method}: validation accuracy", xlabel="epoch", ylim=(0, 1.02))
        for ax in row:
            ax.grid(alpha=0.3)
            if ax.get_legend_handles_labels()[0]:
                ax.legend(fontsize=8)
    return _save(figure, path)


def confusion(report: Report, path: str | os.PathLike, title: str) -> Path:
    """Row-normalised confusion matrix (colour) with the counts written in each cell."""
    counts = report.confusion
    k = len(report.class_names)
    rows = counts.sum(axis=1, keepdims=True)
    share = np.divide(counts, rows, out=np.zeros(counts.shape, float), where=rows > 0)
    size = max(4.5, 0.55 * k + 2.5)
    figure = Figure(figsize=(size + 1, size), layout="tight")
    ax = figure.subplots()
    image = ax.imshow(share, cmap="Blues", vmin=0, vmax=1)
    for i in range(k):
        for j in range(k):
            if counts[i, j]:
                colour = "white" if share[i, j] > 0.6 else "black"
                ax.text(j, i, str(counts[i, j]), ha="center", va="center", color=colour, fontsize=8)
    ax.set_xticks(range(k), report.class_names, rotation=45, ha="right")
    ax.set_yticks(range(k), report.class_names)
    ax.set(xlabel="predicted", ylabel="true", title=title)
    figure.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="share of the true class")
    return _save(figure, path)


def per_class_f1(reports: Mapping[str, Report], path: str | os.PathLike, title: str) -> Path:
    """Grouped bars: the F1 of every class, one bar per method."""
    names = next(iter(reports.values())).class_names
    k, m = len(names), len(reports)
    width = 0.8 / m
    figure = Figure(figsize=(max(6, 0.9 * k + 2), 4), layout="tight")
    ax = figure.subplots()
    for i, (method, report) in enumerate(reports.items()):
        ax.bar(np.arange(k) + (i - (m - 1) / 2) * width, report.f1, width, label=method)
    ax.set_xticks(range(k), names, rotation=30, ha="right")
    ax.set(ylabel="F1", ylim=(0, 1.22), yticks=np.linspace(0, 1, 6), title=title)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=8, loc="upper center", ncol=m, frameon=False)
    return _save(figure, path)


def class_colours(n: int) -> ListedColormap:
    """`n` distinct colours (tab10 / tab20)."""
    base = matplotlib.colormaps["tab10" if n <= 10 else "tab20"]
    return ListedColormap([base(i % base.N) for i in range(n)])


def label_map(
    labels: np.ndarray, class_names: Sequence[str], path: str | os.PathLike, title: str
) -> Path:
    """One H x W map of class indices (-1 = none) with a legend of class names."""
    figure = Figure(figsize=(6.5, 5))
    ax = figure.subplots()
    _draw_map(ax, labels, len(class_names), title)
    _legend(figure, class_names)
    return _save(figure, path)


def scene_maps(
    predicted: np.ndarray,
    truth: np.ndarray,
    class_names: Sequence[str],
    path: str | os.PathLike,
) -> Path:
    """The predicted map beside the ground truth (label map 0 = unlabelled, k = class k - 1)."""
    figure = Figure(figsize=(11, 5))
    axes = figure.subplots(1, 2)
    _draw_map(axes[0], np.asarray(truth) - 1, len(class_names), "ground truth")
    _draw_map(axes[1], predicted, len(class_names), "predicted")
    _legend(figure, class_names)
    return _save(figure, path)


def _draw_map(ax: Axes, labels: np.ndarray, k: int, title: str) -> None:
    shown = np.ma.masked_less(np.asarray(labels), 0)
    ax.set_facecolor("black")
    ax.imshow(shown, cmap=class_colours(k), vmin=-0.5, vmax=k - 0.5, interpolation="nearest")
    ax.set(title=title, xticks=[], yticks=[])


def _legend(figure: Figure, class_names: Sequence[str]) -> None:
    colours = class_colours(len(class_names))
    handles = [Patch(color=colours(i), label=n) for i, n in enumerate(class_names)]
    handles.append(Patch(color="black", label="unlabelled / not predicted"))
    figure.legend(handles=handles, loc="center right", fontsize=8, frameon=False)
    figure.subplots_adjust(right=0.78)
