"""What the accuracy suite runs: its datasets, methods and their labels, what --quick changes,
the cached unit (`Cell`, whose key must stay stable) and the run order."""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from benchmarks.description_corruption import CORRUPTIONS

DATASETS = (
    "materials",
    "small-objects",
    "materials-scene",
    "crop-fields",
    "samson",
    "jasper-ridge",
    "moffett",
)
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
    "cnn": {"stage": "cnn", "spectral_branch": False, "compare_linear": False},
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
    "cnn": "plain 3D-CNN (stage cnn, no spectral branch, always kept)",
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
# 2: label-efficient splits, the refit on train + validation, and the region-shift protocols.
CELL_VERSION = 2  # part of every cache key: raise it when a cell comes to mean something else
# How a scene is labelled and scored: "blocks" holds out random spatial blocks as the test part
# (train / validation / test 0.6 / 0.2 / 0.2); "west" and "north" label one side of the scene
# (the west or north REGION_SIDE of its columns or rows) and score the other side, half a window
# away, as a user who walked some fields maps the rest.
PROTOCOLS = ("blocks", "west", "north")
REGION_SIDE = 0.45
SCENE_TRAIN = 0.6  # the blocks protocol's training fraction: validation 0.2, the rest tested


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
    train: float | None
    val: float
    protocol: str = "blocks"

    def recipe(self, overrides: Mapping[str, Any]) -> dict[str, Any]:
        """Everything that decides this cell's result, as hashed into its cache key."""
        return {**dataclasses.asdict(self), "overrides": dict(overrides), "version": CELL_VERSION}

    def key(self, overrides: Mapping[str, Any]) -> str:
        """The cell's file and run-folder name: readable fields and a hash of the recipe."""
        text = json.dumps(self.recipe(overrides), sort_keys=True)
        digest = hashlib.sha1(text.encode()).hexdigest()[:10]
        train = "rest" if self.train is None else f"{self.train:g}"
        return (
            f"{self.dataset}-{self.protocol}-{self.method}-t{train}-v{self.val:g}-s{self.seed}-"
            f"{digest}"
        )

    def default_cell(self) -> Cell:
        """The `default` cell of the same dataset, training size and seed: its split is ours."""
        return dataclasses.replace(self, method="default")


@dataclass(frozen=True)
class Selection:
    """What one invocation runs: its table, datasets, methods, training sizes and seeds."""

    table: str
    datasets: list[str]
    methods: list[str]
    counts: tuple[int, ...]
    seeds: int
    skipped: dict[str, str]
    protocols: tuple[str, ...] = ("blocks",)


def select(args: argparse.Namespace) -> Selection:
    """The table, datasets, methods (`default` first, always), sizes and seeds asked for."""
    seeds = args.seeds or (QUICK.seeds if args.quick else DEFAULT_SEEDS)
    if not args.semantics:
        wanted = args.datasets or (QUICK.datasets if args.quick else DATASETS)
        methods = ["default", *[m for m in args.methods or METHODS if m != "default"]]
        protocols = tuple(args.protocols or PROTOCOLS)
        return Selection("accuracy", list(wanted), methods, (OBJECT_TRAIN,), seeds, {}, protocols)
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


def plan(
    datasets: Sequence[str],
    methods: Sequence[str],
    seeds: int,
    sizes: Mapping[str, Sequence[tuple[float | None, float, str]]],
) -> list[Cell]:
    """The cells in run order: per dataset, (training size, validation, protocol) and seed,
    `default` first."""
    ordered = ["default", *[m for m in methods if m != "default"]]
    return [
        Cell(dataset, method, seed, train, val, protocol)
        for dataset in datasets
        for train, val, protocol in sizes[dataset]
        for seed in range(seeds)
        for method in ordered
    ]
