"""A training run into a run folder: data + descriptions + configuration -> config.yaml,
train.log, split.json, checkpoints, metrics.json, report.md and the inference bundle.

`train_run` is what `s3fn train` runs. Under `torchrun --nproc-per-node N -m s3fn train ...`
it trains data-parallel: rank 0 alone writes the run folder; the other ranks cut their windows
into a temporary folder and read the checkpoints of rank 0 when resuming. The window stores are
deleted once a run has finished (a resumed run cuts them again, identically).
"""

from __future__ import annotations

import json
import logging
import shutil
import tempfile
import time
from collections.abc import Callable, Mapping
from contextlib import ExitStack
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from s3fn import process_group
from s3fn.config import TrainConfig
from s3fn.data.datasets import ObjectDataset, SceneDataset
from s3fn.data.defaults import Choice, make_split
from s3fn.data.errors import S3FNDataError
from s3fn.data.opening import open_data
from s3fn.data.split_files import load_split, split_to_dict
from s3fn.data.splits import ObjectSplit, SceneSplit, with_test_labels
from s3fn.evaluate.results import scene_maps, score, summary_line, write_results
from s3fn.inference import RUN_BUNDLE_DIR, Classifier
from s3fn.io import read_labels
from s3fn.models.registry import get_model
from s3fn.progress import CountingObjects, Progress, print_outputs
from s3fn.run_folder import CONFIG_FILE, SPLIT_FILE
from s3fn.semantics.class_embeddings import encode, load_embeddings, read_descriptions
from s3fn.train.allocator import keep_freed_memory
from s3fn.train.pipeline import label_line, train_classifier

LOG_FILE, WINDOWS_DIR = "train.log", "windows"
LINEAR = "linear pixel model"


def class_embeddings(
    config: TrainConfig, class_names: list[str], progress: Progress
) -> tuple[torch.Tensor | None, str | None]:
    """The class embeddings a model that uses text needs (None for the others), and the
    encoder that made them."""
    if not get_model(config.stage).uses_text:
        return None, None
    if config.embeddings:
        return load_embeddings(config.embeddings, class_names), f"file {config.embeddings}"
    if not config.descriptions:
        raise S3FNDataError(
            f"stage {config.stage!r} needs --descriptions FILE (or --embeddings FILE); "
            "--stage cnn trains the plain 3D-CNN"
        )
    descriptions = read_descriptions(config.descriptions)
    return encode(
        descriptions, class_names, progress, encoder=config.encoder, pooling=config.pooling
    )


def train_run(config: TrainConfig, out: Path, *, resume: bool, progress: Progress) -> list[Path]:
    """Train as `config` says into `out`; returns the files written (rank 0). A fresh run that
    stops on bad data removes the run folder it created: nothing in it could be resumed."""
    group = process_group.init_from_env()
    writer = group is None or group.is_writer
    progress = progress if writer else Progress(quiet=True)
    created = writer and not resume and not out.exists()
    try:
        try:
            files = _train(config, out, resume, progress, writer)
        except S3FNDataError:
            if created:
                shutil.rmtree(out, ignore_errors=True)
            raise
        # Every rank past its last collective before the group goes: gloo torn down on one
        # rank while another still used it aborted that process now and then.
        process_group.barrier()
        return files
    finally:
        process_group.shutdown()


def _train(
    config: TrainConfig, out: Path, resume: bool, progress: Progress, writer: bool
) -> list[Path]:
    keep_freed_memory()
    data = open_data(
        config.data,
        labels=config.labels,
        classes=config.classes,
        key=config.key,
        labels_key=config.labels_key,
    )
    embeddings, encoder = class_embeddings(config, data.class_names, progress)
    if config.split:
        split, choices = load_split(data, config.split), {}
    else:
        split, choices = make_split(
            data,
            train=config.train,
            val=config.val,
            test=config.test,
            seed=config.seed,
            window=config.window,
            block_size=config.block_size,
            holdout=config.holdout,
        )
    data, split = _scored_on_test_labels(config, data, split)
    with ExitStack() as stack:
        if writer:
            out.mkdir(parents=True, exist_ok=True)
            (out / "checkpoints").mkdir(exist_ok=True)
            config.save(out)
            (out / SPLIT_FILE).write_text(json.dumps(split_to_dict(data, split)) + "\n")
            stack.callback(_log_to(out / LOG_FILE))
        process_group.barrier()
        workdir = out if writer else _rank_workdir(out, stack)
        dataset = CountingObjects(data) if isinstance(data, ObjectDataset) else data
        if isinstance(dataset, CountingObjects):
            reads = 2 * len(split.train) + len(dataset)
            stack.enter_context(dataset.counting(progress.bar(reads, "cutting windows", "image")))
        stack.enter_context(progress.epochs())
        start = time.perf_counter()
        classifier = train_classifier(
            dataset,
            split,
            settings=config.settings(),
            class_embeddings=embeddings,
            workdir=workdir,
            resume=resume,
            in_memory=True,
        )
        seconds = time.perf_counter() - start
    if not writer:
        return []
    _record_choices(config, out, choices, classifier)
    return _finish(config, out, data, split.test, classifier, encoder, seconds, progress)


def _finish(
    config: TrainConfig,
    out: Path,
    data: ObjectDataset | SceneDataset,
    test: np.ndarray,
    classifier: Classifier,
    encoder: str | None,
    seconds: float,
    progress: Progress,
) -> list[Path]:
    """Save the bundle, score the test part, write metrics and report, print where they went."""
    classifier.info["text_encoder"] = encoder
    bundle = classifier.save(out / RUN_BUNDLE_DIR)
    shutil.rmtree(out / WINDOWS_DIR, ignore_errors=True)  # a resume cuts them again
    info = classifier.info
    histories = info["histories"]
    epochs = ", ".join(f"{stage} {len(h)} epochs" for stage, h in histories.items())
    trained = get_model(config.stage).label
    label = get_model(info["model"]).label
    if info.get("refit"):
        refit = ", ".join(f"{stage} {n}" for stage, n in info["refit"]["epochs"].items())
        epochs += f"; then {label} refitted on training + validation"
        epochs += f": {refit} epochs" if refit else ""
    print(f"trained {trained} ({epochs}, {seconds:.0f} s)")
    notes = [label_line(info["labels"]) + "."]
    comparison = validation_lines(info.get("validation"), trained)
    held = held_model_line(info.get("validation"), trained)
    lost = held is not None and not info["validation"]["network_kept"]
    for line in [notes[0], *comparison, *([f"warning: {held}" if lost else held] if held else [])]:
        print(line)
    if comparison:
        notes += ["", "## Validation: the network beside a linear pixel model", "", *comparison]
    if held:
        notes += ["", f"{held[0].upper()}{held[1:]}."]
    extra = {
        "train_seconds": round(seconds, 1),
        "stage_seconds": info.get("stage_seconds"),
        "text_encoder": encoder,
        "labels": info["labels"],
        "validation": info.get("validation"),
        "model": info["model"],
        "refit": None
        if not info.get("refit")
        else {"model": info["model"], "epochs": info["refit"]["epochs"]},
    }
    evaluation = scene = None
    if len(test):
        evaluation = score(classifier, data, test, progress)
        scene = scene_maps(classifier, data, progress) if isinstance(data, SceneDataset) else None
    files = write_results(
        out,
        label,
        evaluation,
        title=f"s3fn train: {label} on {config.data}",
        histories=histories,
        config=config.to_dict(),
        scene=scene,
        extra=extra,
        notes=notes,
    )
    if evaluation is None:
        print(
            "no test part (every label trained the model): the bundle is not scored; score it "
            "on other labels with `s3fn evaluate RUN --labels FILE`, or hold out --test"
        )
    else:
        print(f"test {summary_line(evaluation)}")
    written = [out / CONFIG_FILE, out / LOG_FILE, out / "checkpoints", bundle, *files]
    print_outputs(f"run folder {out}:", written)
    return written


def validation_lines(validation: Mapping[str, Any] | None, label: str) -> list[str]:
    """The network and the linear pixel model on the validation part, as a Markdown table."""
    if not validation:
        return []
    rows = [
        f"| {name} | {100 * scores['oa']:.2f} | {100 * scores['aa']:.2f} | "
        f"{100 * scores['kappa']:.2f} |"
        for name, scores in ((label, validation["network"]), (LINEAR, validation["linear"]))
    ]
    level = validation["level"]
    lines = [
        f"Scored on the {validation['count']} validation {level}s, before the refit (the model "
        "saved has trained on them too):",
        "",
        f"| model ({level} level) | OA | AA | kappa |",
        "|---|---|---|---|",
        *rows,
    ]
    tried = validation.get("linear_strengths")
    if tried:
        scores = ", ".join(f"C={c}: {100 * oa:.2f}" for c, oa in tried.items())
        lines += [
            "",
            f"The {LINEAR}'s L2 strength was chosen on validation (OA {scores}); it has "
            f"C={validation['linear_strength']}.",
        ]
    return lines


def held_model_line(validation: Mapping[str, Any] | None, trained: str) -> str | None:
    """Which model the bundle holds after the comparison on validation, and why."""
    if not validation:
        return None
    network, linear = 100 * validation["network"]["oa"], 100 * validation["linear"]["oa"]
    margin = 100 * validation["margin"]
    unit = "fields" if validation["level"] == "pixel" else "images"
    units = f"{validation['units']} validation {unit}"
    sure = (
        f"{100 * validation['advantage_lower_bound']:+.2f} points at "
        f"{validation['confidence']:.0%} confidence over its {units}"
    )
    if validation["network_kept"]:
        return (
            f"the bundle holds {trained}: it beat the {LINEAR} on validation by "
            f"{network - linear:.2f} points of OA (more than {margin:.1f}; {sure})"
        )
    if network > linear + margin:
        why = (
            f"scored {network:.2f} on validation against the linear model's {linear:.2f}, but "
            f"its lead is not sure ({sure}): won on a few fields, it is no evidence"
        )
    else:
        why = (
            f"scored {network:.2f} on validation against the linear model's {linear:.2f}, not "
            f"more than {margin:.1f} points above it"
        )
    return (
        f"the bundle holds the {LINEAR}, not {trained}: the network {why}, and a network that "
        "does not surely beat it there is the less robust of the two on parts of a scene unlike "
        "the labelled ones (--no-compare-linear keeps the network)"
    )


def _scored_on_test_labels(
    config: TrainConfig, data: ObjectDataset | SceneDataset, split: ObjectSplit | SceneSplit
) -> tuple[ObjectDataset | SceneDataset, ObjectSplit | SceneSplit]:
    """The data and split with the test part taken from --test-labels, where given: the
    scene's label map then holds the test labels too."""
    saved = isinstance(split, SceneSplit) and split.test_labels is not None
    if config.test_labels is None:
        if saved:
            raise S3FNDataError(
                f"{config.split}: its test part came from {split.test_labels}; pass "
                f"--test-labels {split.test_labels} again"
            )
        return data, split
    if not isinstance(data, SceneDataset):
        raise S3FNDataError(
            f"--test-labels {config.test_labels}: a label map scores a scene; to score object "
            "images apart, use `s3fn evaluate RUN --data FOLDER`"
        )
    if config.test:
        raise S3FNDataError("pass --test or --test-labels, not both")
    labels = read_labels(config.test_labels, key=config.labels_key)
    split = with_test_labels(split, labels, config.test_labels)
    return SceneDataset(data.cube, split.labels, data.class_names, name=data.name), split


def _record_choices(
    config: TrainConfig, out: Path, choices: dict[str, Choice], classifier: Classifier
) -> None:
    """Print what was chosen from the data and why, and write it into config.yaml: the values
    as options (so --resume and --config repeat them), the reasons as comments."""
    reasons = {key: (c.value, c.reason) for key, c in choices.items()}
    for key, made in classifier.info.get("choices", {}).items():
        reasons.setdefault(key, (made["value"], made["reason"]))
    for key, (value, why) in reasons.items():
        print(f"chose {key} = {value}: {why}")
    values = {
        k: v for k, (v, _) in reasons.items() if k in ("window", "block_size", "n_components")
    }
    if not config.split:
        config = replace(config, **values)
    config.save(out, {key: f"{value} ({why})" for key, (value, why) in reasons.items()})


def _log_to(path: Path) -> Callable[[], None]:
    """Send the package's log (epoch lines included) to `path`; returns the undo."""
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(message)s"))
    logger = logging.getLogger("s3fn")
    previous = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)

    def undo() -> None:
        logger.removeHandler(handler)
        logger.setLevel(previous)
        handler.close()

    return undo


def _rank_workdir(out: Path, stack: ExitStack) -> Path:
    """A private folder for a non-zero rank's windows, its checkpoints linked to rank 0's."""
    folder = Path(tempfile.mkdtemp(prefix="s3fn-rank-"))
    stack.callback(shutil.rmtree, folder, True)
    (folder / "checkpoints").symlink_to((out / "checkpoints").resolve(), target_is_directory=True)
    return folder
