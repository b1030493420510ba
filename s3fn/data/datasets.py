"""Datasets of both kinds: object-level (one label per image) and scene-level (a label map)."""

from __future__ import annotations

import csv
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from s3fn.data.cube import Cube
from s3fn.data.errors import S3FNDataError
from s3fn.data.nodata import drop_nodata_labels, nodata_pixels
from s3fn.io import is_supported, read_cube, read_labels

MASK_SUFFIX = "_mask"


@dataclass(frozen=True)
class ObjectImage:
    """One image of an object-level dataset: its file, its class index and its mask file if any."""

    path: Path
    label: int
    mask_path: Path | None = None


@dataclass(frozen=True, eq=False)
class ObjectSample:
    """A loaded image: the cube, its HxW boolean object mask, its class index and its id."""

    cube: Cube
    mask: np.ndarray
    label: int
    image_id: str


class ObjectDataset:
    """Object-level dataset: one label per image, each image read from its file when indexed.

    The object mask comes from the image's mask file (non-zero = object) or, without one, from
    "sum of the bands > `threshold`", since such images have zero reflectance off the object;
    no-data pixels are never inside it (a mask file marking them warns).
    `labels` (int64, one class index per image) and `image_ids` (paths relative to `root`) are
    known without reading any image.
    """

    def __init__(
        self,
        images: Sequence[ObjectImage],
        class_names: Sequence[str],
        *,
        root: str | os.PathLike | None = None,
        threshold: float = 0.0,
        key: str | None = None,
    ) -> None:
        self.images = list(images)
        self.class_names = list(class_names)
        self.root = None if root is None else Path(root)
        self.threshold = threshold
        self.key = key
        self.labels = np.array([im.label for im in self.images], dtype=np.int64)
        self.image_ids = [_relative(im.path, self.root) for im in self.images]
        if len(set(self.class_names)) != len(self.class_names):
            raise S3FNDataError(f"class names {self.class_names}: expected unique names")
        bad = [im for im in self.images if not 0 <= im.label < len(self.class_names)]
        if bad:
            raise S3FNDataError(
                f"{bad[0].path}: label {bad[0].label}; expected 0..{len(self.class_names) - 1}"
            )

    @classmethod
    def from_folder(
        cls,
        root: str | os.PathLike,
        *,
        class_names: Sequence[str] | None = None,
        threshold: float = 0.0,
        key: str | None = None,
    ) -> ObjectDataset:
        """Images laid out as `root/<class name>/<image files>`; `<stem>_mask.<ext>` are masks.

        Classes are the sub-folders in sorted order, or `class_names` in that order.
        """
        root = Path(root)
        if not root.is_dir():
            raise FileNotFoundError(f"{root}: dataset folder not found")
        if class_names is None:
            class_names = sorted(p.name for p in root.iterdir() if p.is_dir())
            if not class_names:
                raise S3FNDataError(f"{root}: no class sub-folders; expected root/<class>/<image>")
        images = []
        for label, name in enumerate(class_names):
            folder = root / name
            if not folder.is_dir():
                raise FileNotFoundError(f"{folder}: class folder {name!r} not found")
            found = _images_in(folder)
            if not found:
                raise S3FNDataError(f"{folder}: no image files; expected {name!r} images")
            images += [ObjectImage(path, label, _mask_beside(path)) for path in found]
        return cls(images, class_names, root=root, threshold=threshold, key=key)

    @classmethod
    def from_manifest(
        cls,
        manifest: str | os.PathLike,
        *,
        class_names: Sequence[str] | None = None,
        threshold: float = 0.0,
        key: str | None = None,
    ) -> ObjectDataset:
        """Images listed in a CSV with header `path,label[,mask]`; paths relative to the CSV.

        Labels are class names; classes are the sorted distinct labels, or `class_names`.
        """
        manifest = Path(manifest)
        if not manifest.is_file():
            raise FileNotFoundError(f"{manifest}: manifest not found")
        with manifest.open(newline="") as handle:
            reader = csv.DictReader(handle)
            fields = reader.fieldnames or []
            if "path" not in fields or "label" not in fields:
                raise S3FNDataError(
                    f"{manifest}: header is {','.join(fields) or '(empty)'}; "
                    "expected path,label[,mask]"
                )
            rows = [(reader.line_num, row) for row in reader]
        if class_names is None:
            class_names = sorted({row["label"] for _, row in rows})
        index = {name: i for i, name in enumerate(class_names)}
        images = []
        for line, row in rows:
            if row["label"] not in index:
                raise S3FNDataError(
                    f"{manifest} line {line}: label {row['label']!r}; expected one of {class_names}"
                )
            path = _listed_file(manifest, line, "image", row["path"])
            mask = row.get("mask") or None
            mask_path = None if mask is None else _listed_file(manifest, line, "mask", mask)
            images.append(ObjectImage(path, index[row["label"]], mask_path))
        if not images:
            raise S3FNDataError(f"{manifest}: no rows; expected one image per row")
        return cls(images, class_names, root=manifest.parent, threshold=threshold, key=key)

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> ObjectSample:
        image = self.images[index]
        cube = read_cube(image.path, key=self.key)
        if image.mask_path is None:
            mask = cube.data.sum(axis=2) > self.threshold
        else:
            mask = read_labels(image.mask_path) != 0
            if mask.shape != cube.shape[:2]:
                raise S3FNDataError(
                    f"{image.mask_path}: mask is {mask.shape}; expected {cube.shape[:2]} like "
                    f"its image {image.path.name}"
                )
            mask = drop_nodata_labels(mask, nodata_pixels(cube.data), str(image.mask_path))
        return ObjectSample(cube, mask, image.label, self.image_ids[index])


@dataclass(eq=False)
class SceneDataset:
    """Scene-level dataset: one cube and an HxW label map, 0 = unlabelled, k = class_names[k-1].

    Labels on no-data pixels (any band NaN) are dropped to 0, with a `NoDataWarning` counting
    them: such a pixel has no spectrum to learn from.
    """

    cube: Cube
    labels: np.ndarray
    class_names: list[str]
    name: str = "scene"

    def __post_init__(self) -> None:
        self.class_names = list(self.class_names)
        if self.labels.shape != self.cube.shape[:2]:
            raise S3FNDataError(
                f"{self.name}: label map is {self.labels.shape}; expected {self.cube.shape[:2]} "
                "like the cube"
            )
        top = int(self.labels.max(initial=0))
        if top > len(self.class_names) or int(self.labels.min(initial=0)) < 0:
            raise S3FNDataError(
                f"{self.name}: label map holds {top} but there are {len(self.class_names)} class "
                f"names; expected labels 0..{len(self.class_names)}"
            )
        self.labels = drop_nodata_labels(self.labels, nodata_pixels(self.cube.data), self.name)

    @classmethod
    def from_files(
        cls,
        cube_path: str | os.PathLike,
        labels_path: str | os.PathLike,
        class_names: Sequence[str],
        *,
        cube_key: str | None = None,
        labels_key: str | None = None,
    ) -> SceneDataset:
        """Read the cube and the label map from files of any supported format."""
        cube = read_cube(cube_path, key=cube_key)
        labels = read_labels(labels_path, key=labels_key)
        return cls(cube, labels, list(class_names), name=Path(cube_path).stem)

    def class_counts(self) -> dict[str, int]:
        """Number of labelled pixels per class."""
        counts = np.bincount(self.labels.ravel(), minlength=len(self.class_names) + 1)
        return dict(zip(self.class_names, counts[1:].tolist(), strict=True))


def _images_in(folder: Path) -> list[Path]:
    return sorted(
        p
        for p in folder.iterdir()
        if p.is_file()
        and not p.name.startswith(".")
        and not p.stem.endswith(MASK_SUFFIX)
        and is_supported(p)
    )


def _mask_beside(image: Path) -> Path | None:
    stem = image.name.removesuffix(image.suffix)
    masks = sorted(image.parent.glob(f"{stem}{MASK_SUFFIX}.*"))
    masks = [m for m in masks if is_supported(m)]
    return masks[0] if masks else None


def _listed_file(manifest: Path, line: int, what: str, name: str) -> Path:
    path = Path(name) if Path(name).is_absolute() else manifest.parent / name
    if not path.is_file():
        raise FileNotFoundError(f"{manifest} line {line}: {what} file {name!r} not found")
    return path


def _relative(path: Path, root: Path | None) -> str:
    if root is not None and path.is_relative_to(root):
        return path.relative_to(root).as_posix()
    return path.as_posix()
