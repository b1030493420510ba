"""Leak-free splits: by image for object-level data, by spatially disjoint blocks for scenes.

The labels a user gives are training data: by default a split holds out a validation part
only, and a test part only when asked for. In a scene, a labelled pixel is a training pixel
unless it is held out or its window would reach a held-out pixel, so the buffer around held-out
blocks goes only where a training window would actually reach one. Every split function ends
with `check_no_leak`, which a hand-made split can be passed to as well.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from s3fn.data.errors import LeakageError, S3FNDataError
from s3fn.data.fields import hold_out_fields
from s3fn.data.windows import as_size, window_sums

PARTS = ("train", "val", "test")
HOLDOUTS = ("fields", "blocks")  # what a scene's validation part holds out whole


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

    def final_training(self) -> np.ndarray:
        """The images a model refitted after early stopping trains on: train and validation."""
        return np.sort(np.concatenate([self.train, self.val]))


@dataclass(frozen=True, eq=False)
class SceneSplit:
    """Labelled pixels (row, column) of the train / val / test parts of a scene.

    `blocks` maps every pixel to the part its block went to (-1: a block without labels);
    a training pixel whose window would reach a validation or test pixel, or a validation pixel
    whose window would reach a test pixel, is left out. `block_size` and `fractions`
    (validation, test) are what `split_scene` made it with (None for a hand-made split), and
    `holdout` what its validation part held out whole ("fields" or "blocks"); `test_labels`
    names the label map the test part came from (`with_test_labels`), if any.
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
    test_labels: str | None = None
    holdout: str | None = None

    def part(self, name: str) -> np.ndarray:
        """(K, 2) pixel coordinates of part `name` ("train", "val" or "test")."""
        return getattr(self, _part_name(name))

    def part_labels(self, name: str) -> np.ndarray:
        """Class index (0-based) of each pixel of part `name`."""
        pixels = self.part(name)
        return self.labels[pixels[:, 0], pixels[:, 1]] - 1

    def region(self, name: str) -> np.ndarray:
        """HxW boolean map of the area assigned to part `name`: the blocks it was given and,
        for a held-out part, its pixels (whole fields held out lie in training blocks)."""
        area = self.blocks == PARTS.index(_part_name(name))
        if name == "train":
            return area & ~self._marked(("val", "test"))
        return area | self._marked((name,))

    def unseen_region(self, *, refit: bool = False) -> np.ndarray:
        """HxW boolean map of the pixels preprocessing may be fitted on: all but the held-out
        areas (validation and test; only test with `refit`). Unlabelled pixels count: the
        whole cube is the user's, only the held-out labels are not."""
        held = self.region("test") if refit else self.region("val") | self.region("test")
        return ~held

    def _marked(self, parts: Sequence[str]) -> np.ndarray:
        marked = np.zeros(self.labels.shape, dtype=bool)
        for part in parts:
            pixels = self.part(part)
            marked[pixels[:, 0], pixels[:, 1]] = True
        return marked

    def final_training(self) -> np.ndarray:
        """The pixels a model refitted after early stopping trains on: every labelled pixel not
        in the test part whose window reaches no test pixel (train, validation and the
        validation buffer)."""
        labelled = self.labels > 0
        tested = np.zeros(self.labels.shape, dtype=bool)
        tested[self.test[:, 0], self.test[:, 1]] = True
        clear = window_sums(tested, self.window, centred=True) == 0
        return np.argwhere(labelled & ~tested & clear)

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
    train: float | int | None = None,
    val: float | int = 0.2,
    test: float | int | None = None,
    seed: int = 0,
) -> ObjectSplit:
    """Stratified split by image; `val` and `test` are fractions or per-class image counts.

    `train` None: every image not held out trains; `test` None: no test part, or, where
    `train` is given, the images left over (as `train=0.6, val=0.2` leaves 20 % to test).
    No image is in two parts.
    """
    labels = np.asarray(labels, dtype=np.int64)
    parts: dict[str, list[np.ndarray]] = {p: [] for p in PARTS}
    for k, name in enumerate(class_names):
        members = np.flatnonzero(labels == k)
        n = len(members)
        n_val = _how_many(val, n, "val", minimum=0)
        if train is None:
            n_test = 0 if test is None else _how_many(test, n, "test", minimum=0)
            n_train = n - n_val - n_test
        else:
            n_train = _how_many(train, n, "train", minimum=1)
            n_test = n - n_train - n_val if test is None else _how_many(test, n, "test", minimum=0)
        if n_train < 1 or n_test < 0 or n_train + n_val + n_test > n:
            raise S3FNDataError(
                f"class {name!r} has {n} images; expected at least "
                f"{max(n_train, 1) + n_val + max(n_test, 0)} for train={train!r}, val={val!r}, "
                f"test={test!r}"
            )
        order = np.random.default_rng([seed, k]).permutation(members)
        parts["train"].append(order[:n_train])
        parts["val"].append(order[n_train : n_train + n_val])
        parts["test"].append(order[n_train + n_val : n_train + n_val + n_test])
    split = ObjectSplit(
        **{p: np.sort(np.concatenate(v)).astype(np.int64) for p, v in parts.items()},
        labels=labels,
        class_names=list(class_names),
        seed=seed,
    )
    check_no_leak(split)
    return split


def held_out_fractions(train: float | None, val: float, test: float | None) -> tuple[float, float]:
    """(validation, test) fractions of a scene split: `test` None means none, or, where `train`
    is given, what train and validation leave over."""
    held_test = test
    if held_test is None:
        held_test = 0.0 if train is None else 1.0 - train - val
    if (train is not None and train <= 0) or val < 0 or held_test < -1e-9 or val + held_test >= 1:
        raise S3FNDataError(
            f"train={train!r}, val={val!r}, test={test!r}: expected train > 0, val >= 0, "
            "test >= 0 and something left to train on"
        )
    return float(val), max(0.0, float(held_test))


def split_scene(
    labels: np.ndarray,
    class_names: Sequence[str],
    window: int | tuple[int, int],
    *,
    train: float | None = None,
    val: float = 0.2,
    test: float | None = None,
    block_size: int | None = None,
    seed: int = 0,
    holdout: str = "fields",
) -> SceneSplit:
    """Hold out whole fields or spatially disjoint square blocks of a label map, by class.

    Blocks (default side 4x the window) go to validation and test by a seeded greedy draw that
    follows the class fractions (`held_out_fractions`: by default a validation part only).
    With `holdout="fields"` the validation part is whole fields instead (`hold_out_fields`;
    blocks only for a class labelled in one field), so that it sees how an unlabelled field
    differs. Every other labelled pixel trains, unless its window would reach a held-out
    pixel; a validation pixel whose window would reach a test pixel is left out. So no
    training window covers a validation or test pixel, and no label is dropped that need not be.
    """
    h, w = as_size(window)
    labels = np.asarray(labels)
    if labels.ndim != 2 or labels.min(initial=0) < 0 or labels.max(initial=0) > len(class_names):
        raise S3FNDataError(
            f"label map of shape {labels.shape}: expected 2-D with values 0..{len(class_names)}"
        )
    if holdout not in HOLDOUTS:
        raise S3FNDataError(f"holdout={holdout!r}: expected one of {', '.join(HOLDOUTS)}")
    held_val, held_test = held_out_fractions(train, val, test)
    fractions = np.array([1.0 - held_val - held_test, held_val, held_test])
    side = block_size or 4 * max(h, w)
    if side < 1:
        raise S3FNDataError(f"block_size={block_size!r}: expected a positive number of pixels")
    blocks = _assign_blocks(labels, len(class_names), side, fractions, seed)
    labelled = labels > 0
    kept = {"test": labelled & (blocks == 2)}
    validation = labelled & (blocks == 1)
    if holdout == "fields":
        share = held_val / (1.0 - held_test)
        validation = hold_out_fields(labels, labelled & ~kept["test"], share, validation, seed)
        blocks = np.where(blocks == 1, 0, blocks).astype(blocks.dtype)
    held = kept["test"]
    for part, mine in (("val", validation), ("train", labelled & ~validation & ~kept["test"])):
        clear = window_sums(held, (h, w), centred=True) == 0
        kept[part] = mine & clear
        held = held | kept[part]
    split = SceneSplit(
        **{p: np.argwhere(kept[p]) for p in PARTS},
        labels=labels,
        class_names=list(class_names),
        window=(h, w),
        blocks=blocks,
        seed=seed,
        block_size=side,
        fractions=(held_val, held_test),
        holdout=holdout,
    )
    wanted = [p for p, f in zip(PARTS, fractions, strict=True) if f > 0]
    for part in wanted:
        empty = [n for n, c in split.class_counts()[part].items() if c == 0]
        if empty:
            warnings.warn(
                f"scene split: no {part} pixels for {', '.join(empty)}; use smaller blocks "
                f"(block_size, now {side}) or a smaller window",
                stacklevel=2,
            )
    check_no_leak(split)
    return split


def with_test_labels(split: SceneSplit, test_labels: np.ndarray, source: str) -> SceneSplit:
    """`split` scored on a separate label map instead: its labelled pixels become the test part
    (a test part the split had is dropped), and training and validation pixels
    that are test pixels, or whose windows reach one, are left out. `source` names the map."""
    test_labels = np.asarray(test_labels)
    if test_labels.shape != split.labels.shape:
        raise S3FNDataError(
            f"{source}: test label map of shape {test_labels.shape}; expected "
            f"{split.labels.shape} like the training labels"
        )
    if test_labels.min(initial=0) < 0 or test_labels.max(initial=0) > len(split.class_names):
        raise S3FNDataError(
            f"{source}: test labels span {test_labels.min()}..{test_labels.max()}; expected "
            f"0..{len(split.class_names)} (0 = not scored)"
        )
    tested = test_labels > 0
    if not tested.any():
        raise S3FNDataError(f"{source}: no labelled pixel to score; expected some labels 1..K")
    labels = np.where(tested, test_labels, split.labels)
    clear = window_sums(tested, split.window, centred=True) == 0
    keep = {}
    for part in ("train", "val"):
        pixels = split.part(part)
        keep[part] = pixels[clear[pixels[:, 0], pixels[:, 1]]]
    blocks = np.where(split.blocks == 2, 0, split.blocks).astype(split.blocks.dtype)
    result = SceneSplit(
        train=keep["train"],
        val=keep["val"],
        test=np.argwhere(tested),
        labels=labels,
        class_names=split.class_names,
        window=split.window,
        blocks=blocks,
        seed=split.seed,
        block_size=split.block_size,
        fractions=split.fractions,
        test_labels=source,
        holdout=split.holdout,
    )
    check_no_leak(result)
    return result


SIDES = ("west", "north")


def label_sides(
    labels: np.ndarray, side: str = "west", fraction: float = 0.45, gap: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """(the labels a user gives, the labels scored) of a scene labelled on one side and mapped
    on the other: the west (`side="west"`) or north `fraction` of the columns (rows), and the
    rest from `gap` pixels beyond it on, as label maps of `labels`' shape (0 elsewhere)."""
    labels = np.asarray(labels)
    if side not in SIDES:
        raise ValueError(f"side={side!r}; expected one of {', '.join(SIDES)}")
    if labels.ndim != 2:
        raise S3FNDataError(f"label map of shape {labels.shape}: expected 2-D")
    if not 0 < fraction < 1 or gap < 0:
        raise ValueError(f"fraction={fraction}, gap={gap}: expected 0 < fraction < 1, gap >= 0")
    along = labels if side == "west" else labels.T
    cut = round(fraction * along.shape[1])
    index = np.arange(along.shape[1])[None, :]
    given = np.where(index < cut, along, 0)
    scored = np.where(index >= cut + gap, along, 0)
    return (given, scored) if side == "west" else (given.T, scored.T)


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
