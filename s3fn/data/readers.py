"""`read_cube` and `read_labels`: one entry point for every supported file format."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from s3fn.data.containers import read_container
from s3fn.data.cube import Cube, as_cube_array, as_label_array
from s3fn.data.envi import header_for, read_envi
from s3fn.data.errors import S3FNDataError

CONTAINER_SUFFIXES = (".mat", ".npy", ".npz", ".h5", ".hdf5", ".he5", ".hdf")
SUPPORTED = "ENVI (.hdr + data file), MATLAB .mat (v5 or v7.3), .npy, .npz or HDF5 (.h5/.hdf5)"


def read_cube(path: str | os.PathLike, *, key: str | None = None) -> Cube:
    """Read an HxWxB hyperspectral cube (as float32) and its wavelengths in nm from any format.

    `key` names the array inside a .mat / .npz / HDF5 file when it holds more than one 3-D array.
    """
    path = _existing(path)
    if _is_envi(path):
        _no_key(path, key)
        array, wavelengths = read_envi(path)
        field = "image"
    else:
        array, field, wavelengths = read_container(path, key, ndim=3)
    data = as_cube_array(array, str(path), field)
    return Cube(data, wavelengths)


def read_labels(path: str | os.PathLike, *, key: str | None = None) -> np.ndarray:
    """Read an HxW ground-truth map of whole numbers (0 = unlabelled) as int64, from any format."""
    path = _existing(path)
    if _is_envi(path):
        _no_key(path, key)
        array, _ = read_envi(path)
        if array.shape[2] != 1:
            raise S3FNDataError(
                f"{path}: image has {array.shape[2]} bands; expected a 1-band label map"
            )
        return as_label_array(array[:, :, 0], str(path), "image")
    array, field, _ = read_container(path, key, ndim=2)
    return as_label_array(array, str(path), field)


def is_supported(path: Path) -> bool:
    """True for a file that `read_cube` can open: an ENVI header or a known container suffix."""
    return path.suffix.lower() in (*CONTAINER_SUFFIXES, ".hdr")


def _existing(path: str | os.PathLike) -> Path:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: file not found")
    return path


def _is_envi(path: Path) -> bool:
    suffix = path.suffix.lower()
    if suffix == ".hdr":
        return True
    if suffix in CONTAINER_SUFFIXES:
        return False
    if header_for(path) is not None:
        return True
    raise S3FNDataError(
        f"{path}: unsupported format {suffix or '(no suffix)'!r}; expected {SUPPORTED}"
    )


def _no_key(path: Path, key: str | None) -> None:
    if key is not None:
        raise S3FNDataError(f"{path}: an ENVI image holds one cube; key={key!r} does not apply")
