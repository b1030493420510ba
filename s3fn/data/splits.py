"""Leak-free splits: by image for object-level data, by spatially disjoint blocks for scenes.

Every split function ends with `check_no_leak`, which a hand-made split can be passed to as well.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from s3fn.data.errors import LeakageError, S3FNDataError
from s3fn.data.windows import as_size, window_sums

PARTS = ("train", "val", "test")


@dataclass(frozen=True, eq=False)
class ObjectSplit:
    """Image indices of the train / val / test parts of an object-level dataset."""

    train: np.ndarray
    val: np.ndarray
    test: np.ndarray
    labels: np.ndarray
    class_names: list[str]
    seed: int

    def part(self, name: str) -> np.ndarray:
        """Image indices of part `name` ("train", "val" or "test")."""
        return getattr(self, _part_name(name))

    def class_counts(self) -> dict[str, dict[str, int]]:
        """Images per class in each part: {part: {class name: count}}."""
        return {p: _counts(self.labels[self.part(p)], self.class_names) for p in PARTS}

    def summary(self) -> str:
        """The class counts as a small text table."""
        return _table(self.class_counts(), self.class_names, "images")


@dataclass(frozen=True, eq=False)
class SceneSplit:
    """Labelled pixels (row, column) of the train / val / test parts of a scene.

    `blocks` maps every pixel to the part its block went to (-1: a block without labels);
    training and validation pixels whose window would reach into a later part's block are left
    out, so no training window covers a validation or test pixel. `block_size` and
    `fractions` (train, val) are what `split_scene` made it with (None for a hand-made split),
    so that the split can be saved as its recipe and made again.
    """

    train: np.ndarray
    val: np.ndarray
    test: np.ndarray
    labels: np.ndarray
    class_names: list[str]
    window: tuple[int, int]
    blocks: np.ndarray
    seed: int
    block_size: int | None = None
    fractions: tuple[float, float] | None = None

    def part(self, name: str) -> np.ndarray:
        """(K, 2) pixel coordinates of part `name` ("train", "val" or "test")."""
        return getattr(self, _part_name(name))

    def part_labels(self, name: str) -> np.ndarray:
        """Class index (0-based) of each pixel of part `name`."""
        pixels = self.part(name)
        return self.labels[pixels[:, 0], pixels[:, 1]] - 1

    def region(self, name: str) -> np.ndarray:
        """HxW boolean map of the blocks assigned to part `name` (e.g. to fit preprocessing)."""
        return self.blocks == PARTS.index(_part_name(name))

    def class_counts(self) -> dict[str, dict[str, int]]:
        """Labelled pixels per class in each part: {part: {class name: count}}."""
        return {p: _counts(self.part_labels(p), self.class_names) for p in PARTS}

    def summary(self) -> str:
        """The class counts as a small text table."""
        return _table(self.class_counts(), self.class_names, "pixels")


def split_objects(
    labels: Sequence[int] | np.ndarray,
    class_names: Sequence[str],
    *,
    train: float | int = 0.6,
    val: float | int = 0.2,
    seed: int = 0,
) -> ObjectSplit:
    """Stratified split by image: `train` / `val` are fractions or per-class image counts.

    The rest of each class is the test part. No image is in two parts.
    """
    labels = np.asarray(labels, dtype=np.int64)
    parts: dict[str, list[np.ndarray]] = {p: [] for p in PARTS}
    for k, name in enumerate(class_names):
        members = np.flatnonzero(labels == k)
        n = len(members)
        n_train = _how_many(train, n, "train", minimum=1)
        n_val = _how_many(val, n, "val", minimum=0)
        if n_train + n_val > n:
            raise S3FNDataError(
                f"class {name!r} has {n} images; expected at least {n_train + n_val} for "
                f"train={train!r}, val={val!r}"
            )
        order = np.random.default_rng([seed, k]).permutation(members)
        parts["train"].append(order[:n_train])
        parts["val"].append(order[n_train : n_train + n_val])
        parts["test"].append(order[n_train + n_val :])
    split = ObjectSplit(
        **{p: np.sort(np.concatenate(v)).astype(np.int64) for p, v in parts.items()},
        labels=labels,
        class_names=list(class_names),
        seed=seed,
    )
    check_no_leak(split)
    return split


def split_scene(
    labels: np.ndarray,
    class_names: Sequence[str],
    window: int | tuple[int, int],
    *,
    train: float = 0.6,
    val: float = 0.2,
    block_size: int | None = None,
    seed: int = 0,
) -> SceneSplit:
    """Split a label map into spatially disjoint square blocks, stratified by class.

    Blocks (default side 4x the window) go to train / val / test by a seeded greedy draw that
    follows the class fractions; train and val then drop the pixels whose window would reach into
    a block of a later part (a margin of half the window), so no training window covers a
    validation or test pixel.
    """
    h, w = as_size(window)
    labels = np.asarray(labels)
    if labels.ndim != 2 or labels.min(initial=0) < 0 or labels.max(initial=0) > len(class_names):
        raise S3FNDataError(
            f"label map of shape {labels.shape}: expected 2-D with values 0..{len(class_names)}"
        )
    fractions = np.array([train, val, 1.0 - train - val])
    if train <= 0 or val < 0 or fractions[2] < -1e-9:
        raise S3FNDataError(f"train={train!r}, val={val!r}: expected train > 0, val >= 0, sum <= 1")
    side = block_size or 4 * max(h, w)
    if side < 1:
        raise S3FNDataError(f"block_size={block_size!r}: expected a positive number of pixels")
    blocks = _assign_blocks(labels, len(class_names), side, np.clip(fractions, 0, None), seed)
    labelled = labels > 0
    kept = {"test": labelled & (blocks == 2)}
    later = blocks == 2
    for index, part in ((1, "val"), (0, "train")):
        clear = window_sums(later, (h, w), centred=True) == 0
        kept[part] = labelled & (blocks == index) & clear
        later = later | (blocks == index)
    split = SceneSplit(
        **{p: np.argwhere(kept[p]) for p in PARTS},
        labels=labels,
        class_names=list(class_names),
        window=(h, w),
        blocks=blocks,
        seed=seed,
        block_size=side,
        fractions=(float(train), float(val)),
    )
    for part in ("train", "test"):
        empty = [n for n, c in split.class_counts()[part].items() if c == 0]
        if empty:
            warnings.warn(
                f"scene split: no {part} pixels for {', '.join(empty)}; use smaller blocks "
                f"(block_size, now {side}) or a smaller window",
                stacklevel=2,
            )
    check_no_leak(split)
    return split


def check_no_leak(split: ObjectSplit | SceneSplit) -> None:
    """Raise `LeakageError` if the split lets a part see another part's data.

    Object-level: an image in two parts. Scene-level: a training window covering a validation or
    test pixel, or a validation window covering a test pixel.
    """
    if isinstance(split, ObjectSplit):
        for i, first in enumerate(PARTS):
            for second in PARTS[i + 1 :]:
                shared = np.intersect1d(split.part(first), split.part(second))
                if shared.size:
                    raise LeakageError(
                        f"leaking split: {shared.size} images (e.g. image {shared[0]}) are in both "
                        f"{first} and {second}; expected each image in one part"
                    )
        return
    shape = split.labels.shape
    for i, first in enumerate(PARTS[:2]):
        later = np.zeros(shape, dtype=bool)
        for second in PARTS[i + 1 :]:
            pixels = split.part(second)
            later[pixels[:, 0], pixels[:, 1]] = True
        mine = split.part(first)
        covered = window_sums(later, split.window, centred=True)[mine[:, 0], mine[:, 1]]
        if (covered > 0).any():
            row, col = mine[np.argmax(covered > 0)]
            raise LeakageError(
                f"leaking split: {int((covered > 0).sum())} {first} windows of "
                f"{split.window[0]}x{split.window[1]} (e.g. centred on ({row}, {col})) cover "
                f"pixels of a later part; expected none"
            )


def _assign_blocks(
    labels: np.ndarray, n_classes: int, side: int, fractions: np.ndarray, seed: int
) -> np.ndarray:
    height, width = labels.shape
    rows, cols = -(-height // side), -(-width // side)
    block_of = (np.arange(height)[:, None] // side) * cols + np.arange(width)[None, :] // side
    counts = np.zeros((rows * cols, n_classes + 1), dtype=np.float64)
    np.add.at(counts, (block_of.ravel(), labels.ravel()), 1.0)
    counts = counts[:, 1:]
    total = np.maximum(counts.sum(axis=0), 1.0)
    deficit = fractions[:, None] * counts.sum(axis=0)[None, :]
    rng = np.random.default_rng(seed)
    part_of = np.full(rows * cols, -1, dtype=np.int8)
    active = fractions > 0
    for block in rng.permutation(rows * cols):
        if counts[block].sum() == 0:
            continue
        score = (deficit / total) @ counts[block]
        score[~active] = -np.inf
        best = np.flatnonzero(score == score.max())
        choice = best[0] if len(best) == 1 else rng.choice(best)
        part_of[block] = choice
        deficit[choice] -= counts[block]
    return part_of[block_of]


def _how_many(value: float | int, n: int, what: str, minimum: int) -> int:
    if isinstance(value, bool) or value < 0:
        raise S3FNDataError(f"{what}={value!r}: expected a fraction in [0, 1] or an image count")
    if isinstance(value, int | np.integer):
        return int(value)
    if value > 1:
        raise S3FNDataError(f"{what}={value!r}: expected a fraction in [0, 1] or an image count")
    return max(minimum, round(value * n))


def _part_name(name: str) -> str:
    if name not in PARTS:
        raise S3FNDataError(f"part {name!r}: expected one of {', '.join(PARTS)}")
    return name


def _counts(labels: np.ndarray, class_names: Sequence[str]) -> dict[str, int]:
    counts = np.bincount(labels, minlength=len(class_names))
    return dict(zip(class_names, counts.tolist(), strict=True))


def _table(counts: dict[str, dict[str, int]], class_names: Sequence[str], unit: str) -> str:
    width = max(len(unit), *(len(n) for n in class_names), len("total"))
    lines = [f"{unit:<{width}}" + "".join(f"{p:>8}" for p in PARTS)]
    for name in class_names:
        lines.append(f"{name:<{width}}" + "".join(f"{counts[p][name]:>8}" for p in PARTS))
    lines.append(f"{'total':<{width}}" + "".join(f"{sum(counts[p].values()):>8}" for p in PARTS))
    return "\n".join(lines)
