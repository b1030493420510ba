"""The demo: two tasks shaped like what users bring, on built-in data. A few images per class
of small objects (`materials`), and a scene labelled on its west side and mapped on the east
(`materials-scene`). S3FN at its default options, the plain 3D-CNN and the linear pixel model
train on the same labels; the demo scores them on the held-out images and the east side (mean
± std over split seeds) and says which wins and why."""

from __future__ import annotations

import json
import os
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from s3fn.data import builtin, split_objects
from s3fn.data.datasets import ObjectDataset, SceneDataset
from s3fn.data.defaults import scene_window
from s3fn.data.splits import ObjectSplit, SceneSplit, label_sides, split_scene, with_test_labels
from s3fn.evaluate import markdown_table, run_seeds
from s3fn.evaluate.predict import Evaluation
from s3fn.evaluate.results import scene_maps, score
from s3fn.inference import Classifier
from s3fn.models.registry import get_model
from s3fn.progress import CountingObjects, Progress
from s3fn.report import write_report
from s3fn.semantics import bundled_descriptions
from s3fn.semantics.class_embeddings import encode
from s3fn.train import TrainSettings, train_classifier

DEFAULT, CNN, LINEAR = "S3FN (default)", "plain 3D-CNN", "linear pixel model"
METHODS = (DEFAULT, CNN, LINEAR)
# What each method changes in the demo's settings: the default as a user's first run, the
# 3D-CNN always kept (no spectral branch, no comparison), the linear model alone.
CHANGES: dict[str, dict[str, Any]] = {
    DEFAULT: {},
    CNN: {"stage": "cnn", "spectral_branch": False, "compare_linear": False},
    LINEAR: {"stage": "linear"},
}
TIE = 0.5  # OA points within which two methods are called level


@dataclass(frozen=True)
class DemoSettings:
    """How much the demo trains: seeds (one split each), object images per class, the scene's
    labelled side, and the training budget (windows per image, epochs, patience)."""

    seeds: tuple[int, ...] = (0, 1, 2)
    scene_seeds: tuple[int, ...] = (0,)
    train: int = 4
    val: int = 2
    side: float = 0.45
    points: int = 50
    windows_per_image: int = 8
    epochs: int = 12
    semantic_epochs: int = 10
    patience: int = 4
    batch_size: int = 64


FULL = DemoSettings()
QUICK = DemoSettings(
    seeds=(0,), points=40, windows_per_image=6, epochs=5, semantic_epochs=4, patience=3
)


@dataclass(frozen=True, eq=False)
class TaskResult:
    """One task: the first seed's evaluations and classifiers, every seed's scores, the
    per-method summaries, the table and the verdict."""

    name: str
    evaluations: dict[str, Evaluation]
    classifiers: dict[str, Classifier]
    per_seed: dict[int, dict[str, dict[str, float]]]
    table: str
    verdict: str
    summaries: dict[str, Any] = field(default_factory=dict)
    kept: dict[int, dict[str, Any]] = field(default_factory=dict)


@dataclass(frozen=True, eq=False)
class DemoResult:
    """Both tasks, the text printed on screen, the files written and the seconds taken."""

    tasks: dict[str, TaskResult]
    text: str
    files: list[Path] = field(default_factory=list)
    seconds: float = 0.0


def run_demo(
    out: str | os.PathLike, settings: DemoSettings = FULL, progress: Progress | None = None
) -> DemoResult:
    """Train and score the three methods on both tasks and every seed; write `report.md` (both
    tables and verdicts), each task's report, PNGs and default bundle under `objects/` and
    `scene/`, and metrics.json (every seed, mean and std) into `out`."""
    start = time.perf_counter()
    progress = progress or Progress()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    objects, scene = builtin.load("materials"), builtin.load("materials-scene")
    embeddings, encoder = encode(bundled_descriptions("materials"), objects.class_names, progress)
    tasks = {
        "objects": _run_task("objects", objects, embeddings, settings, progress),
        "scene": _run_task("scene", scene, embeddings, settings, progress),
    }
    seconds = time.perf_counter() - start
    text = _screen(tasks, settings, seconds)
    files = [out / "report.md", out / "metrics.json"]
    for name, task in tasks.items():
        files += _task_files(out / name, task, scene if name == "scene" else None, progress)
    files[0].write_text(
        f"# s3fn demo: S3FN against the plain 3D-CNN and the linear pixel model\n\n{text}\n"
        f"\nEach task's report, plots and S3FN bundle: `objects/`, `scene/`. Text encoder: "
        f"{encoder}.\n",
        encoding="utf-8",
    )
    summary = {
        "settings": asdict(settings),
        "text_encoder": encoder,
        "seconds": round(seconds, 1),
        "tasks": {
            name: {
                "methods": {m: s.to_dict() for m, s in task.summaries.items()},
                "verdict": task.verdict,
                "default_kept": {str(seed): info for seed, info in task.kept.items()},
            }
            for name, task in tasks.items()
        },
    }
    files[1].write_text(json.dumps(summary, indent=2) + "\n")
    return DemoResult(tasks, text, files, seconds)


def demo_split(
    data: ObjectDataset | SceneDataset, settings: DemoSettings, seed: int
) -> ObjectSplit | SceneSplit:
    """The split of one seed: `settings.train` / `settings.val` images per class of objects,
    the rest tested; or `settings.points` pixels per class on the scene's west `settings.side`
    (as a user marks a few points in the fields they walked; each point its own field, so
    validation holds out points) and every labelled pixel of its east side, half a window
    beyond, scored."""
    if isinstance(data, ObjectDataset):
        return split_objects(
            data.labels, data.class_names, train=settings.train, val=settings.val, seed=seed
        )
    window = scene_window(data.labels.shape).value
    given, scored = label_sides(data.labels, "west", settings.side, gap=window // 2 + 1)
    rng = np.random.default_rng(seed)
    points = np.zeros_like(given)
    for k in range(1, len(data.class_names) + 1):
        pixels = np.flatnonzero(given == k)
        chosen = rng.choice(pixels, min(settings.points, len(pixels)), replace=False)
        points.flat[chosen] = k
    split = split_scene(points, data.class_names, window, seed=seed)
    return with_test_labels(split, scored, "the east side")


def _run_task(
    name: str,
    data: ObjectDataset | SceneDataset,
    embeddings: torch.Tensor,
    settings: DemoSettings,
    progress: Progress,
) -> TaskResult:
    """Every method on every seed of one task; the first seed's classifiers are kept."""
    per_seed: dict[int, dict[str, dict[str, float]]] = {}
    kept: dict[int, dict[str, Any]] = {}
    first: tuple[dict[str, Classifier], dict[str, Evaluation]] | None = None
    seeds = settings.seeds if name == "objects" else settings.scene_seeds
    for seed in seeds:
        split = demo_split(data, settings, seed)
        classifiers = {
            method: _train(data, split, embeddings, settings, seed, method, progress)
            for method in METHODS
        }
        evaluations = {m: score(c, data, split.test, progress) for m, c in classifiers.items()}
        per_seed[seed] = {m: e.scalars() for m, e in evaluations.items()}
        kept[seed] = _kept(classifiers[DEFAULT])
        first = first or (classifiers, evaluations)
    assert first is not None
    level = "image" if name == "objects" else "window"
    metrics = [f"{level}_{m}" for m in ("oa", "aa", "kappa")]
    summaries = {m: run_seeds(lambda s, m=m: per_seed[s][m], seeds) for m in METHODS}
    unit = "image" if name == "objects" else "pixel"
    table = markdown_table(
        summaries, metrics, headers=[f"{unit} OA (%)", f"{unit} AA (%)", f"{unit} kappa (x100)"]
    )
    oa = {m: 100 * float(np.mean([per_seed[s][m][metrics[0]] for s in seeds])) for m in METHODS}
    verdict = _verdict(oa, list(kept.values()))
    return TaskResult(name, first[1], first[0], per_seed, table, verdict, summaries, kept)


def _train(
    data: ObjectDataset | SceneDataset,
    split: ObjectSplit | SceneSplit,
    embeddings: torch.Tensor,
    settings: DemoSettings,
    seed: int,
    method: str,
    progress: Progress,
) -> Classifier:
    """One method trained on `split` as `s3fn train` would, with the demo's budget."""
    training = TrainSettings(
        windows_per_image=settings.windows_per_image,
        epochs=settings.epochs,
        semantic_epochs=settings.semantic_epochs,
        patience=settings.patience,
        batch_size=settings.batch_size,
        seed=seed,
    )
    training = replace(training, **CHANGES[method])
    texts = embeddings if get_model(training.stage).uses_text else None
    if isinstance(data, SceneDataset):
        with tempfile.TemporaryDirectory(prefix="s3fn-demo-") as work, progress.epochs():
            return train_classifier(
                data, split, settings=training, class_embeddings=texts, workdir=work
            )
    counting = CountingObjects(data)
    reads = 2 * (len(split.train) + len(split.val))
    with (
        tempfile.TemporaryDirectory(prefix="s3fn-demo-") as work,
        progress.epochs(),
        counting.counting(progress.bar(reads, f"seed {seed}: {method}", "image")),
    ):
        return train_classifier(
            counting,
            split,
            settings=training,
            class_embeddings=texts,
            workdir=work,
            in_memory=True,
        )


def _kept(classifier: Classifier) -> dict[str, Any]:
    """Which model the default's bundle holds and the validation scores that chose it."""
    validation = classifier.info.get("validation") or {}
    return {
        "model": classifier.info.get("model"),
        "validation_oa": {
            name: validation[name]["oa"] for name in ("network", "linear") if name in validation
        },
        "labels": classifier.info.get("labels"),
    }


def _verdict(oa: Mapping[str, float], kept: Sequence[Mapping[str, Any]]) -> str:
    """Which method wins (mean OA over the seeds) and why, with which model the default kept
    on each seed, in a sentence or two a newcomer can act on."""
    best = max(oa, key=oa.__getitem__)
    networks = sum(k["model"] != "linear" for k in kept)
    scores = [k["validation_oa"] for k in kept if k["validation_oa"]]
    choice = ""
    if scores:
        network = 100 * float(np.mean([v["network"] for v in scores]))
        linear = 100 * float(np.mean([v["linear"] for v in scores]))
        held = (
            "the network on every seed"
            if networks == len(kept)
            else "the linear pixel model on every seed"
            if networks == 0
            else f"the network on {networks} of {len(kept)} seeds, the linear pixel model on "
            "the others"
        )
        choice = (
            f" The default kept {held}: on its validation part the network scored "
            f"{network:.1f} against the linear model's {linear:.1f} (mean over the seeds)."
        )
    if oa[DEFAULT] >= oa[best] - TIE:
        lead = min(oa[DEFAULT] - oa[m] for m in (CNN, LINEAR))
        head = (
            f"S3FN's default wins ({oa[DEFAULT]:.1f})."
            if lead > TIE
            else f"S3FN's default is level with the best ({oa[DEFAULT]:.1f} against "
            f"{max(oa[CNN], oa[LINEAR]):.1f})."
        )
        return head + choice
    misled = (networks == len(kept)) if best == LINEAR else (networks == 0)
    if misled and scores:
        why = (
            " Validation inside the labelled part favoured what the default kept, but the part"
            f" scored differs from it, and there the {best} carries over better."
        )
    elif best == CNN:
        why = " Its spectral branch and semantic head did not help the network on this data."
    else:
        why = " Its choice on validation went the other way on some seeds."
    return f"The {best} wins ({oa[best]:.1f} against the default's {oa[DEFAULT]:.1f}).{choice}{why}"


def _screen(tasks: Mapping[str, TaskResult], settings: DemoSettings, seconds: float) -> str:
    """Both tasks' tables and verdicts, as printed and at the top of report.md."""
    heads = {
        "objects": f"Small objects, {settings.train} training and {settings.val} validation "
        f"images per class (built-in `materials`), scored on the other images (image level; "
        f"split seeds {list(settings.seeds)}):",
        "scene": f"A scene with {settings.points} labelled pixels per class on its west "
        f"{settings.side:.0%}, mapped on the east (built-in `materials-scene`), scored on every "
        f"labelled pixel of the east side (pixel level; seeds {list(settings.scene_seeds)}):",
    }
    lines = []
    for name, task in tasks.items():
        lines += [heads[name], "", task.table, "", task.verdict, ""]
    lines.append(f"({seconds:.0f} s in all)")
    return "\n".join(lines)


def _task_files(
    folder: Path, task: TaskResult, scene: SceneDataset | None, progress: Progress
) -> list[Path]:
    """One task's report (first seed), its PNGs and the default's bundle in `folder`."""
    default = task.classifiers[DEFAULT]
    histories = {
        m: c.info["histories"] for m, c in task.classifiers.items() if c.info.get("histories")
    }
    report = write_report(
        folder,
        task.evaluations,
        title=f"s3fn demo, {task.name}: seed {next(iter(task.per_seed))}",
        histories=histories,
        scene=None if scene is None else scene_maps(default, scene, progress),
        notes=[task.table, "", task.verdict],
    )
    bundle = default.save(folder / "bundle")
    return [report, bundle, *sorted(folder.glob("*.png"))]
