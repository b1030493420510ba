"""Small files and cubes for the s3fn.data tests, written with the real writers."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np

_MAT73_HEADER = (
    b"MATLAB 7.3 MAT-file, Platform: GLNXA64, Created on: Mon Jan  1 00:00:00 2024 "
    b"HDF5 schema 1.00 ."
)


def cube(h: int = 6, w: int = 5, b: int = 4, seed: int = 0) -> np.ndarray:
    """A small HxWxB float32 cube of distinct, positive values."""
    rng = np.random.default_rng(seed)
    return rng.uniform(0.05, 1.0, (h, w, b)).astype(np.float32)


def save_mat73(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """Write arrays the way MATLAB -v7.3 does: HDF5 with a 512-byte MATLAB header, axes reversed."""
    with h5py.File(path, "w", userblock_size=512) as handle:
        for name, array in arrays.items():
            dataset = handle.create_dataset(name, data=np.asarray(array).T)
            dataset.attrs["MATLAB_class"] = np.bytes_("double")
    with open(path, "r+b") as raw:
        raw.write(_MAT73_HEADER.ljust(116, b" ") + b"\0" * 8 + b"\x00\x02" + b"IM")


def object_cube(size: int, bands: int, rng: np.random.Generator, level: float) -> np.ndarray:
    """A disc-shaped object of reflectance around `level` on a zero background."""
    rows, cols = np.mgrid[0:size, 0:size] - (size - 1) / 2
    inside = rows**2 + cols**2 <= (size / 2 - 0.5) ** 2
    values = level + 0.05 * rng.standard_normal((size, size, bands))
    return (values * inside[..., None]).astype(np.float32)


def write_object_folder(
    root: Path, class_names: list[str], per_class: int, size: int = 20, bands: int = 6
) -> Path:
    """`root/<class>/<class>_<i>.npy` object images, one reflectance level per class."""
    rng = np.random.default_rng(0)
    for k, name in enumerate(class_names):
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            np.save(root / name / f"{name}_{i}.npy", object_cube(size, bands, rng, 0.2 + 0.2 * k))
    return root
