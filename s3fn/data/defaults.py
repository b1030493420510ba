"""Defaults that follow from the data: window size, pooling, scene blocks, PCA components.

Each choice comes with the reason it was made, so a command can print it and record it in the
run's config. They apply only where the user gave no value.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from s3fn.data.datasets import ObjectDataset, SceneDataset
from s3fn.data.errors import S3FNDataError
from s3fn.data.splits import (
    ObjectSplit,
    SceneSplit,
    held_out_fractions,
    split_objects,
    split_scene,
)

PAPER_WINDOW = 32  # the paper's object windows
SCENE_WINDOW = 15  # the smallest window the paper's pooled 3D-CNN takes
MIN_WINDOW = 7  # the smallest window the pool-free 3D-CNN takes
POOLED_MIN = 15  # windows (and components) from which the paper's two pools fit
MAX_COMPONENTS = 30  # "a few tens of components", as the paper's PCA kept


@dataclass(frozen=True)
class Choice:
    """A value chosen from the data and the reason, in words, for the log and config.yaml."""

    value: Any
    reason: str


def largest_square(mask: np.ndarray) -> int:
    """Side of the largest all-true axis-aligned square inside a 2-D boolean `mask`."""
    mask = np.asarray(mask, dtype=bool)
    best = 0
    previous = np.zeros(mask.shape[1] + 1, dtype=np.int32)
    for row in mask:
        current = np.zeros_like(previous)
        for col in np.flatnonzero(row):
            current[col + 1] = 1 + min(previous[col], previous[col + 1], current[col])
        best = max(best, int(current.max(initial=0)))
        previous = current
    return best


def object_window(squares: Sequence[int], largest: int = PAPER_WINDOW) -> Choice:
    """The window for objects whose largest inscribed squares are `squares` (one per training
    image): `largest` where every object holds it, else a size that leaves each object a few
    distinct positions, never below the 7 x 7 the pool-free network takes."""
    if not len(squares):
        raise S3FNDataError("no training images to choose a window from")
    smallest = int(min(squares))
    if smallest >= largest + 2:
        return Choice(
            largest, f"every training object holds a {largest}x{largest} window (the preset's)"
        )
    side = max(MIN_WINDOW, min(largest, smallest - 2))
    if smallest >= side:
        reason = (
            f"the smallest training object holds a {smallest}x{smallest} square; {side}x{side} "
            "windows leave every object several positions"
        )
    else:
        reason = (
            f"the smallest training object holds only a {smallest}x{smallest} square; windows "
            f"of {side}x{side} (the smallest the network takes) may reach past its mask"
        )
    return Choice(side, reason)


def scene_window(shape: tuple[int, int]) -> Choice:
    """The window for a scene of `shape`: 15 (the smallest the paper's pooled network takes)
    where the scene is large enough to split into blocks of several windows, smaller (odd,
    >= 7) for small scenes so that spatially disjoint parts still fit."""
    side = min(shape)
    size = int(np.clip(side // 13 * 2 + 1, MIN_WINDOW, SCENE_WINDOW))
    if size == SCENE_WINDOW:
        return Choice(size, "the scene is large enough for 15x15 windows")
    return Choice(
        size,
        f"a {shape[0]}x{shape[1]} scene is too small for 15x15 windows and spatially disjoint "
        f"blocks; {size}x{size} windows keep train, validation and test apart",
    )


def pools_for(window: tuple[int, int], depth: int, what: str = "bands") -> Choice:
    """The paper's two 2x2x2 pools when the windows and their spectral `depth` (the bands, or
    the PCA components where they are fixed) are >= 15, else none (so that the valid
    convolutions still fit down to 7)."""
    if min(*window, depth) >= POOLED_MIN:
        return Choice(("avg", None, "avg"), "windows and components are large enough to pool")
    return Choice(
        (None, None, None),
        f"{window[0]}x{window[1]} windows of {depth} {what} are too small for the two "
        "stride-2 pools; the conv blocks run without pooling",
    )


def components_range(bands: int, pooled: bool) -> tuple[int, int]:
    """(fewest, most) PCA components to keep: enough for the network's valid convolutions,
    at most `MAX_COMPONENTS`, never more than the bands."""
    fewest = min(bands, POOLED_MIN if pooled else MIN_WINDOW)
    return fewest, min(bands, max(MAX_COMPONENTS, fewest))


def scene_split(
    labels: np.ndarray,
    class_names: Sequence[str],
    window: int | tuple[int, int],
    *,
    train: float | None = None,
    val: float = 0.2,
    test: float | None = None,
    seed: int = 0,
    holdout: str = "fields",
) -> tuple[SceneSplit, Choice]:
    """A spatially disjoint split whose block side (from 4x the window down to the window)
    best balances the parts: the largest smallest share, over classes and parts, of the pixels
    a part should get. Small scenes get small blocks instead of one block for everything."""
    h, w = (window, window) if isinstance(window, int) else window
    held_val, held_test = held_out_fractions(train, val, test)
    fractions = {"train": 1.0 - held_val - held_test, "val": held_val, "test": held_test}
    totals = np.bincount(np.asarray(labels).ravel(), minlength=len(class_names) + 1)[1:]
    best: tuple[float, SceneSplit] | None = None

    def split_with(side: int) -> SceneSplit:
        return split_scene(
            labels,
            class_names,
            (h, w),
            val=held_val,
            test=held_test,
            block_size=side,
            seed=seed,
            holdout=holdout,
        )

    for side in range(4 * max(h, w), max(h, w) - 1, -1):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            split = split_with(side)
        counts = split.class_counts()
        shares = [
            min(1.0, counts[part][name] / (fraction * total))
            for part, fraction in fractions.items()
            if fraction > 0
            for name, total in zip(class_names, totals, strict=True)
            if total > 0
        ]
        balance = min(shares, default=0.0)
        if best is None or balance > best[0] + 1e-9:
            best = (balance, split)
    if best is None:
        raise S3FNDataError(f"window {h}x{w}: expected a positive window size")
    balance, split = best
    side = split.block_size
    if balance > 0:
        reason = (
            f"{side}px blocks balance the parts best: every class gets at least "
            f"{balance:.0%} of its share in each part"
        )
    else:
        reason = f"{side}px blocks come closest; no block size gives every class every part"
        split = split_with(side)  # again, so that its warnings reach the user
    return split, Choice(side, reason)


def as_count(value: float | None) -> float | int | None:
    """A split size: whole numbers >= 1 are counts per class, the rest fractions."""
    if value is None:
        return None
    return int(value) if value >= 1 and float(value).is_integer() else float(value)


def make_split(
    data: ObjectDataset | SceneDataset,
    *,
    train: float | None = None,
    val: float = 0.2,
    test: float | None = None,
    seed: int = 0,
    window: int | None = None,
    block_size: int | None = None,
    holdout: str = "fields",
) -> tuple[ObjectSplit | SceneSplit, dict[str, Choice]]:
    """A leak-free split (by image for objects, by whole fields or spatial blocks for scenes)
    and what was chosen from the data for it: a scene's window and block side when not given.
    By default a validation part only; see `split_objects` and `split_scene` for `train`,
    `test` and `holdout`."""
    if not isinstance(data, SceneDataset):
        split = split_objects(
            data.labels,
            data.class_names,
            train=as_count(train),
            val=as_count(val),
            test=as_count(test),
            seed=seed,
        )
        return split, {}
    choices = {}
    if window is None:
        choices["window"] = scene_window(data.labels.shape)
        window = choices["window"].value
    if block_size is not None:
        split = split_scene(
            data.labels,
            data.class_names,
            window,
            train=train,
            val=val,
            test=test,
            block_size=block_size,
            seed=seed,
            holdout=holdout,
        )
        return split, choices
    split, choices["block_size"] = scene_split(
        data.labels,
        data.class_names,
        window,
        train=train,
        val=val,
        test=test,
        seed=seed,
        holdout=holdout,
    )
    return split, choices
