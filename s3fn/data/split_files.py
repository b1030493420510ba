"""A split saved as split.json (image ids or pixels, with what remakes a scene split) and read
back for the same data, so another run or `s3fn evaluate` uses exactly the same parts."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from s3fn.data.datasets import ObjectDataset, SceneDataset
from s3fn.data.errors import S3FNDataError
from s3fn.data.splits import ObjectSplit, SceneSplit, check_no_leak, split_scene

SPLIT_FILE = "split.json"


def split_to_dict(
    data: ObjectDataset | SceneDataset, split: ObjectSplit | SceneSplit
) -> dict[str, Any]:
    """The split as JSON-ready data: image ids (objects) or pixel rows/columns (scenes), with
    what remakes a scene split (window, block side, fractions, seed)."""
    parts = ("train", "val", "test")
    if isinstance(split, SceneSplit):
        train, val = split.fractions or (None, None)
        return {
            "kind": "scene",
            "window": split.window[0],
            "block_size": split.block_size,
            "seed": split.seed,
            "train_fraction": train,
            "val_fraction": val,
            **{p: split.part(p).tolist() for p in parts},
        }
    ids = data.image_ids
    return {"kind": "object", **{p: [ids[i] for i in split.part(p)] for p in parts}}


def load_split(data: ObjectDataset | SceneDataset, path: str | Path) -> ObjectSplit | SceneSplit:
    """The split saved in `path` (a run's split.json) for the same `data`: image ids matched
    to the dataset, or a scene split remade from its settings and checked pixel for pixel."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: split file not found")
    try:
        saved = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise S3FNDataError(f"{path}: not valid JSON ({exc})") from exc
    scene = isinstance(data, SceneDataset)
    if saved.get("kind") != ("scene" if scene else "object"):
        raise S3FNDataError(
            f"{path}: a {saved.get('kind')!r} split; expected a {'scene' if scene else 'object'} "
            "split for this data"
        )
    if not scene:
        index = {image_id: i for i, image_id in enumerate(data.image_ids)}
        parts = {}
        for part in ("train", "val", "test"):
            missing = [i for i in saved[part] if i not in index]
            if missing:
                raise S3FNDataError(f"{path}: {part} image {missing[0]!r} is not in the data")
            parts[part] = np.array(sorted(index[i] for i in saved[part]), dtype=np.int64)
        split = ObjectSplit(
            **parts, labels=data.labels, class_names=data.class_names, seed=saved.get("seed", 0)
        )
        check_no_leak(split)
        return split
    needed = [
        k
        for k in ("window", "block_size", "seed", "train_fraction", "val_fraction")
        if saved.get(k) is None
    ]
    if needed:
        raise S3FNDataError(
            f"{path}: field {needed[0]!r} is missing; expected a split.json of s3fn train"
        )
    split = split_scene(
        data.labels,
        data.class_names,
        int(saved["window"]),
        train=float(saved["train_fraction"]),
        val=float(saved["val_fraction"]),
        block_size=int(saved["block_size"]),
        seed=int(saved["seed"]),
    )
    for part in ("train", "val", "test"):
        if not np.array_equal(split.part(part), np.asarray(saved[part]).reshape(-1, 2)):
            raise S3FNDataError(
                f"{path}: its {part} pixels differ from the split remade for this scene; "
                "expected the split.json of a run on the same scene and labels"
            )
    return split


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
