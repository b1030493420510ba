"""A split saved as split.json (image ids or pixels, with what remakes a scene split) and read
back for the same data, so another run or `s3fn evaluate` uses exactly the same parts."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from s3fn.data.datasets import ObjectDataset, SceneDataset
from s3fn.data.errors import S3FNDataError
from s3fn.data.splits import ObjectSplit, SceneSplit, check_no_leak
from s3fn.run_folder import CONFIG_FILE, SPLIT_FILE


def split_to_dict(
    data: ObjectDataset | SceneDataset, split: ObjectSplit | SceneSplit
) -> dict[str, Any]:
    """The split as JSON-ready data: image ids (objects), or pixel rows/columns with the part of
    every block and how it was made (scenes), so that `load_split` gives back the same split."""
    parts = ("train", "val", "test")
    if isinstance(split, SceneSplit):
        val, test = split.fractions or (None, None)
        side = split.block_size
        return {
            "kind": "scene",
            "window": split.window[0],
            "block_size": side,
            "seed": split.seed,
            "val_fraction": val,
            "test_fraction": test,
            "test_labels": split.test_labels,
            "holdout": split.holdout,
            "block_parts": None if side is None else split.blocks[::side, ::side].tolist(),
            **{p: split.part(p).tolist() for p in parts},
        }
    ids = data.image_ids
    return {"kind": "object", **{p: [ids[i] for i in split.part(p)] for p in parts}}


def load_split(data: ObjectDataset | SceneDataset, path: str | Path) -> ObjectSplit | SceneSplit:
    """The split saved in `path` (a run's split.json) for the same `data`: image ids matched
    to the dataset, or a scene's pixels and blocks, checked against its labels. A scene split
    whose test part came from a separate label map needs that map again (`with_test_labels`)."""
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
    if "block_parts" not in saved:
        raise S3FNDataError(
            f"{path}: a split of an older s3fn, whose training pixels kept a margin from whole "
            "held-out blocks; expected a split.json of this version (train again to make one)"
        )
    needed = [k for k in ("window", "block_size", "block_parts", "seed") if saved.get(k) is None]
    if needed:
        raise S3FNDataError(
            f"{path}: field {needed[0]!r} is missing; expected a split.json of s3fn train"
        )
    side = int(saved["block_size"])
    height, width = data.labels.shape
    block_parts = np.asarray(saved["block_parts"], dtype=np.int8)
    if block_parts.shape != (-(-height // side), -(-width // side)):
        raise S3FNDataError(
            f"{path}: its blocks cover another scene size than {height}x{width}; expected the "
            "split.json of a run on the same scene"
        )
    blocks = np.repeat(np.repeat(block_parts, side, axis=0), side, axis=1)[:height, :width]
    parts = {
        p: np.asarray(saved[p], dtype=np.int64).reshape(-1, 2) for p in ("train", "val", "test")
    }
    checked = ("train", "val") if saved.get("test_labels") else ("train", "val", "test")
    for part in checked:
        pixels = parts[part]
        inside = ((pixels >= 0) & (pixels < (height, width))).all(axis=1)
        if not inside.all() or (data.labels[pixels[:, 0], pixels[:, 1]] == 0).any():
            raise S3FNDataError(
                f"{path}: some {part} pixels are not labelled in this scene; expected the "
                "split.json of a run on the same scene and labels"
            )
    fractions = saved.get("val_fraction"), saved.get("test_fraction")
    split = SceneSplit(
        **parts,
        labels=data.labels,
        class_names=data.class_names,
        window=(int(saved["window"]),) * 2,
        blocks=blocks,
        seed=int(saved["seed"]),
        block_size=side,
        fractions=None if None in fractions else (float(fractions[0]), float(fractions[1])),
        test_labels=saved.get("test_labels"),
        holdout=saved.get("holdout"),
    )
    if split.test_labels is None:
        check_no_leak(split)
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


@dataclass(frozen=True)
class ScoringTarget:
    """What `s3fn evaluate` scores: the data to open, and the split file whose test part to
    score (None: every labelled pixel or image of the data)."""

    data: str
    labels: str | None
    classes: list[str] | None
    key: str | None
    part: str
    split_file: Path | None


def scoring_target(
    run_dir: Path | None,
    data: str | None,
    labels: str | None,
    classes: list[str] | None,
    key: str | None,
    part: str | None,
) -> ScoringTarget:
    """The data and part to score a bundle (`run_dir` None) or a run on. A run defaults to its
    own data (config.yaml) and its test part, or, with `labels`, to every pixel of those."""
    if run_dir is None:
        if data is None:
            raise S3FNDataError("a bundle has no data of its own: pass --data")
        if part == "test":
            raise S3FNDataError("a bundle has no test part: pass a run folder, or --part all")
        return ScoringTarget(data, labels, classes, key, "all", None)
    config = yaml.safe_load((run_dir / CONFIG_FILE).read_text()) or {}
    part = part or ("all" if labels is not None else "test")
    data = data or config.get("data")
    classes = classes or config.get("classes")
    key = key or config.get("key")
    if part == "all":
        return ScoringTarget(data, labels or config.get("labels"), classes, key, part, None)
    split_file = run_dir / SPLIT_FILE
    saved = json.loads(split_file.read_text()) if split_file.is_file() else {"test": []}
    if not saved["test"]:
        raise S3FNDataError(
            f"{run_dir}: the run holds no test part (every label trained it); pass --labels "
            "FILE with labels it did not train on, or --part all"
        )
    labels = saved.get("test_labels") or labels or config.get("labels")
    return ScoringTarget(data, labels, classes, key, part, split_file)


def trained_pixels(data: ObjectDataset | SceneDataset, run_dir: Path) -> int:
    """How many labelled pixels of a scene `data` the run's training or validation part held
    (0 for objects or without a split file)."""
    split_file = run_dir / SPLIT_FILE
    if not isinstance(data, SceneDataset) or not split_file.is_file():
        return 0
    saved = json.loads(split_file.read_text())
    pixels = np.asarray(saved["train"] + saved["val"], dtype=np.int64).reshape(-1, 2)
    inside = (pixels < data.labels.shape).all(axis=1)
    pixels = pixels[inside]
    return int((data.labels[pixels[:, 0], pixels[:, 1]] > 0).sum())
