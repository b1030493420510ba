"""Opening the `--data` of a command: object folders, manifests, scene cubes, built-in data."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from s3fn.data import builtin
from s3fn.data.datasets import ObjectDataset, SceneDataset
from s3fn.data.errors import S3FNDataError
from s3fn.data.splits import ObjectSplit, SceneSplit, split_objects, split_scene

BUILTIN = "builtin:"
OBJECT_WINDOW, SCENE_WINDOW = 32, 15
SPLIT_FILE = "split.json"


def open_data(
    data: str | None,
    *,
    labels: str | None = None,
    classes: list[str] | None = None,
    key: str | None = None,
    labels_key: str | None = None,
) -> ObjectDataset | SceneDataset:
    """`data`: builtin:<name>, an object folder (root/<class>/<cubes>), a CSV manifest, or a
    scene cube with its `labels` map and `classes`."""
    if not data:
        raise S3FNDataError("no data: pass --data (a folder, a manifest, a cube or builtin:NAME)")
    if data.startswith(BUILTIN):
        return builtin.load(data[len(BUILTIN) :])
    path = Path(data)
    if not path.exists():
        raise FileNotFoundError(f"{path}: data not found; expected a folder, a .csv or a cube file")
    if path.is_dir():
        return ObjectDataset.from_folder(path, class_names=classes, key=key)
    if path.suffix.lower() == ".csv":
        return ObjectDataset.from_manifest(path, class_names=classes, key=key)
    if labels is None:
        raise S3FNDataError(
            f"{path}: a single cube is a scene; pass --labels (its label map) and --classes"
        )
    if not classes:
        raise S3FNDataError(f"{path}: pass --classes, the names of labels 1..K of {labels}")
    return SceneDataset.from_files(path, labels, classes, cube_key=key, labels_key=labels_key)


def as_count(value: float) -> float | int:
    """A split size: whole numbers >= 1 are counts per class, the rest fractions."""
    return int(value) if value >= 1 and float(value).is_integer() else float(value)


def window_for(data: ObjectDataset | SceneDataset, window: int | None) -> int:
    """The window side: as given, else 32 for objects and 15 for scenes (the smallest the
    3D-CNN takes without padding)."""
    if window is not None:
        return window
    return SCENE_WINDOW if isinstance(data, SceneDataset) else OBJECT_WINDOW


def make_split(
    data: ObjectDataset | SceneDataset,
    *,
    train: float,
    val: float,
    seed: int,
    window: int,
    block_size: int | None = None,
) -> ObjectSplit | SceneSplit:
    """A leak-free split: by image for objects, by spatial blocks for scenes."""
    if isinstance(data, SceneDataset):
        return split_scene(
            data.labels,
            data.class_names,
            window,
            train=float(train),
            val=float(val),
            block_size=block_size,
            seed=seed,
        )
    return split_objects(
        data.labels, data.class_names, train=as_count(train), val=as_count(val), seed=seed
    )


def split_to_dict(
    data: ObjectDataset | SceneDataset, split: ObjectSplit | SceneSplit
) -> dict[str, Any]:
    """The split as JSON-ready data: image ids (objects) or pixel rows/columns (scenes)."""
    parts = ("train", "val", "test")
    if isinstance(split, SceneSplit):
        return {"kind": "scene", **{p: split.part(p).tolist() for p in parts}}
    ids = data.image_ids
    return {"kind": "object", **{p: [ids[i] for i in split.part(p)] for p in parts}}


def saved_test_part(data: ObjectDataset | SceneDataset, split_file: Path) -> np.ndarray:
    """The test part of a saved split, matched to `data` (image ids or pixels)."""
    saved = json.loads(split_file.read_text())
    if saved["kind"] == "scene":
        if not isinstance(data, SceneDataset):
            raise S3FNDataError(f"{split_file}: a scene split, but --data is an object dataset")
        return np.asarray(saved["test"], dtype=np.int64).reshape(-1, 2)
    if isinstance(data, SceneDataset):
        raise S3FNDataError(f"{split_file}: an object split, but --data is a scene")
    index = {image_id: i for i, image_id in enumerate(data.image_ids)}
    missing = [i for i in saved["test"] if i not in index]
    if missing:
        raise S3FNDataError(
            f"{split_file}: test image {missing[0]!r} is not in --data; pass --part all to "
            "evaluate on every image of another dataset"
        )
    return np.array([index[i] for i in saved["test"]], dtype=np.int64)
