"""Leak-free splits: stratified by image, spatially disjoint blocks, and leak refusal."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from s3fn.data import (
    LeakageError,
    ObjectSplit,
    S3FNDataError,
    SceneSplit,
    check_no_leak,
    label_sides,
    split_objects,
    split_scene,
)
from s3fn.data.fields import label_fields

NAMES = ["a", "b", "c"]


def test_object_split_is_stratified_disjoint_and_seeded():
    labels = np.repeat([0, 1, 2], [10, 20, 5])
    split = split_objects(labels, NAMES, train=0.6, val=0.2, seed=7)
    counts = split.class_counts()
    assert counts["train"] == {"a": 6, "b": 12, "c": 3}
    assert counts["val"] == {"a": 2, "b": 4, "c": 1}
    assert counts["test"] == {"a": 2, "b": 4, "c": 1}
    everything = np.concatenate([split.train, split.val, split.test])
    np.testing.assert_array_equal(np.sort(everything), np.arange(35))
    again = split_objects(labels, NAMES, train=0.6, val=0.2, seed=7)
    np.testing.assert_array_equal(again.train, split.train)
    assert not np.array_equal(split_objects(labels, NAMES, seed=8).train, split.train)
    assert "b" in split.summary() and "total" in split.summary()


def test_object_split_with_image_counts_per_class():
    labels = np.repeat([0, 1, 2], 8)
    split = split_objects(labels, NAMES, train=5, val=0, seed=0)
    assert split.class_counts()["train"] == {"a": 5, "b": 5, "c": 5}
    assert len(split.val) == 0 and len(split.test) == 9
    with pytest.raises(S3FNDataError, match="class 'a' has 8 images; expected at least 9"):
        split_objects(labels, NAMES, train=5, val=4)
    with pytest.raises(S3FNDataError, match=r"train=1\.5: expected a fraction in \[0, 1\]"):
        split_objects(labels, NAMES, train=1.5)


def test_leaking_object_split_is_refused():
    labels = np.array([0, 0, 1, 1])
    leaking = ObjectSplit(
        train=np.array([0, 2]),
        val=np.array([], np.int64),
        test=np.array([1, 2]),
        labels=labels,
        class_names=["a", "b"],
        seed=0,
    )
    with pytest.raises(
        LeakageError, match=r"1 images \(e\.g\. image 2\) are in both train and test"
    ):
        check_no_leak(leaking)


def _scene_labels(seed=0, size=60):
    rng = np.random.default_rng(seed)
    coarse = rng.integers(0, 4, (size // 6, size // 6))
    return np.kron(coarse, np.ones((6, 6), np.int64))


def _brute_leaks(split):
    """Training/validation windows (centred) that contain a pixel of a later part."""
    h, w = split.window
    later = {"train": ("val", "test"), "val": ("test",)}
    leaks = 0
    for part, others in later.items():
        other = {tuple(p) for name in others for p in split.part(name)}
        for r, c in split.part(part):
            rows = range(r - h // 2, r - h // 2 + h)
            cols = range(c - w // 2, c - w // 2 + w)
            leaks += any((y, x) in other for y in rows for x in cols)
    return leaks


@pytest.mark.parametrize("holdout", ["fields", "blocks"])
def test_scene_split_has_no_leak_and_keeps_margins(holdout):
    labels = _scene_labels()
    split = split_scene(
        labels, NAMES, 5, train=0.5, val=0.2, block_size=12, seed=1, holdout=holdout
    )
    assert _brute_leaks(split) == 0
    parts = [split.train, split.val, split.test]
    assert sum(len(p) for p in parts) <= (labels > 0).sum()
    seen = {tuple(p) for part in parts for p in part}
    assert len(seen) == sum(len(p) for p in parts)  # disjoint
    for name in ("train", "val", "test"):  # every pixel lies in the area of its own part
        pixels = split.part(name)
        assert split.region(name)[pixels[:, 0], pixels[:, 1]].all()
        assert (split.part_labels(name) == labels[pixels[:, 0], pixels[:, 1]] - 1).all()
    held = np.zeros(labels.shape, dtype=bool)
    for part in ("val", "test"):
        held[split.part(part)[:, 0], split.part(part)[:, 1]] = True
    for r, c in split.train:  # a margin of half the window from every held-out pixel only
        assert not held[max(r - 2, 0) : r + 3, max(c - 2, 0) : c + 3].any()
    assert min(len(split.train), len(split.val), len(split.test)) > 0


def test_scene_split_is_seeded_and_reports_counts():
    labels = _scene_labels()
    first = split_scene(labels, NAMES, 3, block_size=12, seed=4)
    again = split_scene(labels, NAMES, 3, block_size=12, seed=4)
    np.testing.assert_array_equal(first.train, again.train)
    np.testing.assert_array_equal(first.blocks, again.blocks)
    other = split_scene(labels, NAMES, 3, block_size=12, seed=5)
    assert not np.array_equal(first.val, other.val)
    counts = first.class_counts()
    assert sum(counts["train"].values()) == len(first.train)
    assert counts["test"]["a"] == int((first.part_labels("test") == 0).sum())
    assert first.summary().splitlines()[0].split() == ["pixels", "train", "val", "test"]


def test_label_fields_joins_touching_pixels_of_one_class_only():
    labels = np.array(
        [
            [1, 1, 0, 2, 2],
            [0, 0, 1, 0, 2],
            [1, 0, 0, 0, 0],
            [1, 2, 2, 0, 1],
        ]
    )
    fields = label_fields(labels)
    assert (fields[labels == 0] == -1).all()
    same = [((0, 0), (0, 1)), ((0, 1), (1, 2)), ((0, 3), (1, 4)), ((2, 0), (3, 0))]
    apart = [((1, 2), (2, 0)), ((3, 0), (3, 1)), ((3, 2), (0, 3)), ((3, 4), (0, 0))]
    for a, b in same:
        assert fields[a] == fields[b]
    for a, b in apart:
        assert fields[a] != fields[b]
    assert fields.max() + 1 == 5


def _fields_scene():
    """Three classes in eight separate 6x6 fields each (two fields for class c), one wide
    block of class a in a single field."""
    labels = np.zeros((60, 60), np.int64)
    for i in range(8):
        row, col = 2 + 7 * (i // 4), 2 + 7 * (i % 4)
        labels[row : row + 6, col : col + 6] = 1 + i % 2
    labels[30:36, 2:8] = labels[30:36, 40:46] = 3
    labels[45:58, 2:58] = 1
    return labels


def test_field_split_holds_out_whole_fields_and_never_all_of_a_class():
    labels = _fields_scene()
    fields = label_fields(labels)
    for seed in range(5):
        split = split_scene(labels, NAMES, 3, val=0.25, block_size=6, seed=seed)
        assert split.holdout == "fields" and _brute_leaks(split) == 0
        val = np.zeros(labels.shape, bool)
        val[split.val[:, 0], split.val[:, 1]] = True
        for field in np.unique(fields[val]):  # a held-out field is held out whole...
            if (labels[fields == field] == 1).all() and (fields == field).sum() > 36:
                continue  # ...but the class-a block is one field of a class with four
            assert val[fields == field].all()
        counts = split.class_counts()
        assert counts["val"]["b"] == 36 and counts["val"]["c"] == 36  # one field of two/four
        assert all(counts["train"][name] > 0 for name in NAMES)
        trained = np.zeros(labels.shape, bool)
        trained[split.train[:, 0], split.train[:, 1]] = True
        assert not (trained & val).any()
    blocks = split_scene(labels, NAMES, 3, val=0.25, block_size=6, seed=0, holdout="blocks")
    cut = [
        f for f in np.unique(fields[labels > 0]) if 0 < blocks.region("val")[fields == f].mean() < 1
    ]
    assert cut  # blocks cut fields, which the field holdout does not


def test_class_in_one_field_falls_back_to_blocks():
    labels = np.zeros((48, 48), np.int64)
    labels[:, :24] = 1
    labels[2:8, 30:36] = labels[20:26, 30:36] = labels[36:42, 30:36] = 2
    split = split_scene(labels, ["a", "b"], 3, val=0.3, block_size=8, seed=2)
    counts = split.class_counts()
    assert 0 < counts["val"]["a"] < 0.5 * (labels == 1).sum()
    assert counts["val"]["b"] == 36
    with pytest.raises(S3FNDataError, match="holdout='rows': expected one of fields, blocks"):
        split_scene(labels, ["a", "b"], 3, holdout="rows")


def test_leaking_scene_split_is_refused():
    labels = np.ones((10, 10), np.int64)
    blocks = np.zeros((10, 10), np.int8)
    leaking = SceneSplit(
        train=np.array([[2, 2], [8, 8]]),
        val=np.zeros((0, 2), np.int64),
        test=np.array([[3, 4]]),
        labels=labels,
        class_names=["a"],
        window=(5, 5),
        blocks=blocks,
        seed=0,
    )
    with pytest.raises(
        LeakageError, match=r"1 train windows of 5x5 \(e\.g\. centred on \(2, 2\)\)"
    ):
        check_no_leak(leaking)
    far = SceneSplit(
        train=np.array([[8, 8]]),
        val=np.zeros((0, 2), np.int64),
        test=np.array([[3, 4]]),
        labels=labels,
        class_names=["a"],
        window=(5, 5),
        blocks=blocks,
        seed=0,
    )
    check_no_leak(far)


def test_scene_split_warns_about_missing_classes_and_checks_inputs():
    labels = np.zeros((40, 40), np.int64)
    labels[:20] = 1
    labels[20:] = 2
    labels[0, 0] = 3  # one pixel of class c: it cannot be in both train and test
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        split = split_scene(labels, NAMES, 3, test=0.2, block_size=10, seed=0)
    assert any("no " in str(w.message) and "pixels for c" in str(w.message) for w in caught)
    with pytest.raises(
        S3FNDataError, match=r"label map of shape \(40, 40\): expected 2-D with values"
    ):
        split_scene(labels, ["a"], 3)
    with pytest.raises(S3FNDataError, match=r"train=0\.9, val=0\.2, test=None: expected train > 0"):
        split_scene(labels, NAMES, 3, train=0.9, val=0.2)
    with pytest.raises(S3FNDataError, match="part 'dev': expected one of train, val, test"):
        split.part("dev")


def test_label_sides_gives_one_side_and_scores_the_other_past_the_gap():
    labels = np.arange(1, 1 + 6 * 10).reshape(6, 10) % 3 + 1
    given, scored = label_sides(labels, "west", 0.4, gap=2)
    assert (given[:, :4] == labels[:, :4]).all() and not given[:, 4:].any()
    assert not scored[:, :6].any() and (scored[:, 6:] == labels[:, 6:]).all()
    given, scored = label_sides(labels, "north", 0.5, gap=1)
    assert (given[:3] == labels[:3]).all() and not given[3:].any()
    assert not scored[:4].any() and (scored[4:] == labels[4:]).all()
    with pytest.raises(ValueError, match="side='east'"):
        label_sides(labels, "east")
    with pytest.raises(ValueError, match=r"fraction=1\.5"):
        label_sides(labels, "west", 1.5)
    with pytest.raises(S3FNDataError, match="expected 2-D"):
        label_sides(labels[None], "west")
