"""From datasets and splits to windows: fit preprocessing on the training part, cut, store.

Each image is transformed once (only the part its windows cover) and its windows are cut from the
transformed cube, since windows overlap heavily.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from s3fn.data.cube import Cube
from s3fn.data.datasets import ObjectDataset, SceneDataset
from s3fn.data.errors import S3FNDataError
from s3fn.data.preprocess import Preprocessor
from s3fn.data.splits import PARTS, ObjectSplit, SceneSplit, check_no_leak
from s3fn.data.store import WindowStore, WindowStoreWriter
from s3fn.data.windows import WindowCutter, as_size, sample_origins


@dataclass(frozen=True, eq=False)
class WindowBatch:
    """Windows of one image: n x C x h x w float32, class indices (n), image id, positions n x 2."""

    windows: np.ndarray
    labels: np.ndarray
    image_id: str
    positions: np.ndarray


def cut_object_windows(
    cube: Cube | np.ndarray,
    mask: np.ndarray,
    preprocessor: Preprocessor | None,
    n: int,
    size: int | tuple[int, int],
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray]:
    """`n` random windows fully inside `mask`, preprocessed: (n x C x h x w, origins n x 2)."""
    data = cube.data if isinstance(cube, Cube) else cube
    h, w = as_size(size)
    origins = sample_origins(mask, n, (h, w), rng)
    (r0, c0), (r1, c1) = origins.min(axis=0), origins.max(axis=0) + np.array([h, w])
    part = data[r0:r1, c0:c1]
    if preprocessor is not None:
        part = preprocessor.transform_cube(part)
    return WindowCutter(part, (h, w)).at_origins(origins - (r0, c0)), origins


def iter_object_windows(
    dataset: ObjectDataset,
    images: Sequence[int] | np.ndarray,
    preprocessor: Preprocessor | None,
    *,
    windows_per_image: int = 20,
    size: int | tuple[int, int] = 32,
    seed: int = 0,
) -> Iterator[WindowBatch]:
    """Windows of each listed image; image i draws from its own seeded stream ([seed, i])."""
    for i in images:
        sample = dataset[int(i)]
        rng = np.random.default_rng([seed, int(i)])
        windows, origins = cut_object_windows(
            sample.cube, sample.mask, preprocessor, windows_per_image, size, rng
        )
        yield WindowBatch(windows, np.full(len(windows), sample.label), sample.image_id, origins)


def iter_scene_windows(
    scene: SceneDataset,
    pixels: np.ndarray,
    preprocessor: Preprocessor | None,
    *,
    size: int | tuple[int, int],
    batch_size: int = 1024,
) -> Iterator[WindowBatch]:
    """Windows centred on `pixels` (K x 2) of the scene, preprocessed, in batches."""
    data = scene.cube.data if preprocessor is None else preprocessor.transform_cube(scene.cube)
    cutter = WindowCutter(data, size)
    labels = scene.labels[pixels[:, 0], pixels[:, 1]] - 1
    for start in range(0, len(pixels), batch_size):
        centres = pixels[start : start + batch_size]
        yield WindowBatch(
            cutter.at_centres(centres), labels[start : start + batch_size], scene.name, centres
        )


def fit_object_preprocessor(
    dataset: ObjectDataset,
    images: Sequence[int] | np.ndarray,
    *,
    n_components: int | None = None,
    variance: float = 0.999,
    components_range: tuple[int, int] | None = None,
) -> Preprocessor:
    """Fit z-score + PCA on the object pixels (inside the masks) of the listed (training) images."""
    images = [int(i) for i in images]
    if not images:
        raise S3FNDataError("no training images; expected at least one to fit preprocessing")
    first = dataset[images[0]]

    def pixels() -> Iterator[np.ndarray]:
        yield first.cube.data[first.mask]
        for i in images[1:]:
            sample = dataset[i]
            yield sample.cube.data[sample.mask]

    return Preprocessor.fit(
        pixels(),
        n_components=n_components,
        variance=variance,
        components_range=components_range,
        wavelengths=first.cube.wavelengths,
        fwhm=getattr(first.cube, "fwhm", None),
    )


def fit_scene_preprocessor(
    scene: SceneDataset,
    split: SceneSplit,
    *,
    n_components: int | None = None,
    variance: float = 0.999,
    components_range: tuple[int, int] | None = None,
    refit: bool = False,
) -> Preprocessor:
    """Fit z-score + PCA on every pixel outside the held-out blocks (`SceneSplit.unseen_region`),
    labelled or not."""
    return Preprocessor.fit(
        scene.cube.data[split.unseen_region(refit=refit)],
        n_components=n_components,
        variance=variance,
        components_range=components_range,
        wavelengths=scene.cube.wavelengths,
        fwhm=getattr(scene.cube, "fwhm", None),
    )


def write_windows(
    path: str | os.PathLike,
    batches: Iterator[WindowBatch],
    *,
    class_names: Sequence[str],
    kind: str,
    split: str,
    preprocessor: Preprocessor | None,
    compression: str | None = "lzf",
    attrs: dict | None = None,
) -> WindowStore:
    """Write window batches to a new store at `path` and open it for reading."""
    writer: WindowStoreWriter | None = None
    try:
        for batch in batches:
            if writer is None:
                writer = WindowStoreWriter(
                    path,
                    window_shape=batch.windows.shape[1:],
                    class_names=class_names,
                    kind=kind,
                    split=split,
                    preprocessor=preprocessor,
                    compression=compression,
                    attrs=attrs,
                )
            writer.append(batch.windows, batch.labels, batch.image_id, batch.positions)
    except BaseException:
        if writer is not None:
            writer.abort()
        raise
    if writer is None:
        raise S3FNDataError(f"{path}: no windows to write; expected a non-empty split")
    writer.close()
    return WindowStore(path)


def prepare_object_stores(
    dataset: ObjectDataset,
    split: ObjectSplit,
    folder: str | os.PathLike,
    *,
    windows_per_image: int = 20,
    size: int | tuple[int, int] = 32,
    n_components: int | None = None,
    variance: float = 0.999,
    components_range: tuple[int, int] | None = None,
    seed: int = 0,
    compression: str | None = "lzf",
    refit: bool = False,
) -> dict[str, WindowStore]:
    """Fit preprocessing on the training images, then write `<part>.h5` for each non-empty part.

    Returns the stores by part name ("train", "val", "test"). With `refit`, the training part
    is train and validation together (`ObjectSplit.final_training`) and no other is written.
    """
    check_no_leak(split)
    parts = _stored_parts(split, refit)
    fitted = fit_object_preprocessor(
        dataset,
        parts["train"],
        n_components=n_components,
        variance=variance,
        components_range=components_range,
    )
    stores = {}
    for part, images in parts.items():
        if len(images):
            batches = iter_object_windows(
                dataset, images, fitted, windows_per_image=windows_per_image, size=size, seed=seed
            )
            stores[part] = write_windows(
                Path(folder) / f"{part}.h5",
                batches,
                class_names=dataset.class_names,
                kind="object",
                split=part,
                preprocessor=fitted,
                compression=compression,
                attrs={"seed": seed, "windows_per_image": windows_per_image},
            )
    return stores


def prepare_scene_stores(
    scene: SceneDataset,
    split: SceneSplit,
    folder: str | os.PathLike,
    *,
    n_components: int | None = None,
    variance: float = 0.999,
    components_range: tuple[int, int] | None = None,
    compression: str | None = "lzf",
    refit: bool = False,
) -> dict[str, WindowStore]:
    """Fit preprocessing outside the held-out blocks, then write `<part>.h5` for each non-empty
    part.

    Windows have the split's size and are centred on every pixel of each part. With `refit`,
    the training part is every pixel the final model may train on
    (`SceneSplit.final_training`) and no other is written.
    """
    check_no_leak(split)
    fitted = fit_scene_preprocessor(
        scene,
        split,
        n_components=n_components,
        variance=variance,
        components_range=components_range,
        refit=refit,
    )
    stores = {}
    for part, pixels in _stored_parts(split, refit).items():
        if len(pixels):
            batches = iter_scene_windows(scene, pixels, fitted, size=split.window)
            stores[part] = write_windows(
                Path(folder) / f"{part}.h5",
                batches,
                class_names=scene.class_names,
                kind="scene",
                split=part,
                preprocessor=fitted,
                compression=compression,
                attrs={"seed": split.seed},
            )
    return stores


def _stored_parts(split: ObjectSplit | SceneSplit, refit: bool) -> dict[str, np.ndarray]:
    """The parts to write: every part, or for a refit the final training part alone."""
    if refit:
        return {"train": split.final_training()}
    return {part: split.part(part) for part in PARTS}
