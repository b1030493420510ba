"""The demo: the built-in "materials" dataset, its bundled descriptions and the offline text
encoder; S3FN (two stages), the plain 3D-CNN (S3FN's own stage-1 network) and the
spectral-mean MLP trained on seeded splits and scored by image-level vote (mean ± std over the
seeds), with a report of the first seed's run."""

from __future__ import annotations

import json
import os
import tempfile
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import torch

from s3fn.data import builtin, split_objects
from s3fn.data.datasets import ObjectDataset
from s3fn.evaluate import markdown_table, run_seeds
from s3fn.evaluate.predict import Evaluation
from s3fn.evaluate.results import score
from s3fn.inference import Classifier
from s3fn.progress import CountingObjects, Progress
from s3fn.report import write_report
from s3fn.semantics import bundled_descriptions
from s3fn.semantics.class_embeddings import encode
from s3fn.train import FitOptions, TrainSettings, train_classifier

METHODS = ("S3FN", "3D-CNN", "Spectral-mean MLP")
METRICS = ("image_oa", "image_aa", "image_kappa")
HEADERS = ("image OA (%)", "image AA (%)", "image kappa (x100)")


@dataclass(frozen=True)
class DemoSettings:
    """How much the demo trains: seeds (one split each), images per class, windows, epochs."""

    seeds: tuple[int, ...] = (0, 1, 2)
    train: int = 4
    val: int = 2
    window: int = 16
    windows_per_image: int = 20
    epochs: int = 40
    semantic_epochs: int = 40
    patience: int = 10
    batch_size: int = 64


FULL = DemoSettings()
QUICK = DemoSettings(seeds=(0,), windows_per_image=10, epochs=8, semantic_epochs=8, patience=4)


@dataclass(frozen=True, eq=False)
class DemoResult:
    """The first seed's evaluations, every seed's scores, the Markdown table, the files."""

    evaluations: dict[str, Evaluation]
    per_seed: dict[int, dict[str, dict[str, float]]]
    table: str
    files: list[Path] = field(default_factory=list)
    seconds: float = 0.0


def run_demo(
    out: str | os.PathLike, settings: DemoSettings = FULL, progress: Progress | None = None
) -> DemoResult:
    """Train and score the three methods on every seed; write report.md (first seed), PNGs,
    metrics.json (every seed, mean and std) and the first seed's S3FN bundle into `out`."""
    start = time.perf_counter()
    progress = progress or Progress()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    data = builtin.load("materials")
    embeddings, encoder = encode(bundled_descriptions("materials"), data.class_names, progress)
    per_seed: dict[int, dict[str, dict[str, float]]] = {}
    first = None
    for seed in settings.seeds:
        classifiers, evaluations = _train_seed(data, embeddings, settings, seed, progress)
        per_seed[seed] = {m: e.scalars() for m, e in evaluations.items()}
        if first is None:
            first = (classifiers, evaluations)
    classifiers, evaluations = first
    summaries = {m: run_seeds(lambda s, m=m: per_seed[s][m], settings.seeds) for m in METHODS}
    table = markdown_table(summaries, list(METRICS), headers=list(HEADERS))
    seconds = time.perf_counter() - start
    s3fn, mean = classifiers["S3FN"], classifiers["Spectral-mean MLP"]
    histories = {
        "S3FN": s3fn.info["histories"],
        "3D-CNN": {"cnn": s3fn.info["histories"]["cnn"]},
        "Spectral-mean MLP": mean.info["histories"],
    }
    notes = [
        f"Built-in `materials` dataset: {len(data.class_names)} classes x 16 images; "
        f"{settings.train} training, {settings.val} validation and "
        f"{16 - settings.train - settings.val} test images per class. Text encoder: {encoder}. "
        "The 3D-CNN row is S3FN's own stage-1 network (a paired comparison).",
        "",
        f"Image-level scores, mean ± std over split seeds {list(settings.seeds)} "
        f"({seconds:.0f} s):",
        "",
        table,
        "",
        f"The tables and plots below are those of seed {settings.seeds[0]}.",
    ]
    report = write_report(
        out,
        evaluations,
        title="s3fn demo: S3FN against the 3D-CNN and the spectral-mean baseline",
        histories=histories,
        config={**asdict(settings), "text_encoder": encoder},
        notes=notes,
    )
    bundle = s3fn.save(out / "bundle")
    metrics = out / "metrics.json"
    summary = {
        "settings": asdict(settings),
        "text_encoder": encoder,
        "seconds": round(seconds, 1),
        "methods": {m: s.to_dict() for m, s in summaries.items()},
        "histories_first_seed": histories,
    }
    metrics.write_text(json.dumps(summary, indent=2) + "\n")
    files = [report, metrics, bundle, *sorted(out.glob("*.png"))]
    return DemoResult(evaluations, per_seed, table, files, seconds)


def plain_stages(**values: Any) -> TrainSettings:
    """`TrainSettings` whose two stages train with `FitOptions`' own defaults (random scale
    only, weight decay 1e-4, no label smoothing) instead of the preset's, keeping the network
    whatever the linear pixel model scores, updated by `values`."""
    plain = FitOptions()
    return TrainSettings(
        **{
            "weight_decay": plain.weight_decay,
            "augment_scale": list(plain.augment.scale),
            "flip": plain.augment.flip,
            "rot90": plain.augment.rot90,
            "noise": plain.augment.noise,
            "label_smoothing": plain.label_smoothing,
            "compare_linear": False,
            **values,
        }
    )


def _train_seed(
    data: ObjectDataset,
    embeddings: torch.Tensor,
    settings: DemoSettings,
    seed: int,
    progress: Progress,
) -> tuple[dict[str, Classifier], dict[str, Evaluation]]:
    """The three classifiers of split `seed` and their test evaluations."""
    split = split_objects(
        data.labels, data.class_names, train=settings.train, val=settings.val, seed=seed
    )
    training = plain_stages(
        window=settings.window,
        windows_per_image=settings.windows_per_image,
        epochs=settings.epochs,
        semantic_epochs=settings.semantic_epochs,
        patience=settings.patience,
        batch_size=settings.batch_size,
        seed=seed,
    )
    counting = CountingObjects(data)
    reads = len(split.train) + len(data)
    label = f"seed {seed}: cutting windows"
    with (
        tempfile.TemporaryDirectory(prefix="s3fn-demo-") as work,
        progress.epochs(),
        counting.counting(progress.bar(reads, label, "image")),
    ):
        s3fn = train_classifier(
            counting,
            split,
            settings=training,
            class_embeddings=embeddings,
            workdir=work,
            in_memory=True,
        )
    with progress.epochs(), counting.counting(progress.bar(reads, label, "image")):
        mean = train_classifier(
            counting, split, settings=replace(training, stage="spectral-mean"), in_memory=True
        )
    cnn = Classifier(
        s3fn.model.backbone,
        s3fn.preprocessor,
        data.class_names,
        window=s3fn.window,
        n_windows=s3fn.n_windows,
        seed=seed,
    )
    classifiers = dict(zip(METHODS, (s3fn, cnn, mean), strict=True))
    evaluations = {m: score(c, data, split.test, progress) for m, c in classifiers.items()}
    return classifiers, evaluations
