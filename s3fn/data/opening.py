"""Opening what a user names as data: object folders, manifests, scene cubes, built-in data."""

from __future__ import annotations

from pathlib import Path

from s3fn.data import builtin
from s3fn.data.datasets import ObjectDataset, SceneDataset
from s3fn.data.errors import S3FNDataError

BUILTIN = "builtin:"


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
