"""`read_cube` and `read_labels`: one entry point for every supported file format."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from s3fn.data.containers import read_container
from s3fn.data.cube import Cube, as_label_array
from s3fn.data.envi import open_envi
from s3fn.data.errors import S3FNDataError
from s3fn.data.sources import (
    CONTAINER_SUFFIXES,
    NETCDF_SUFFIX,
    RASTER_SUFFIXES,
    existing_file,
    file_kind,
    no_key,
    open_source,
)


def read_cube(path: str | os.PathLike, *, key: str | None = None) -> Cube:
    """Read an HxWxB hyperspectral cube (as float32) and its band metadata from any format.

    `key` names the array inside a .mat / .npz / HDF5 file (or the variable of a NetCDF file)
    when it holds more than one 3-D array. The whole cube is read; `open_source` reads by windows.
    """
    with open_source(path, key=key) as source:
        data = source.read(slice(None), slice(None))
        return Cube(data, source.wavelengths, source.fwhm, source.good_bands)


def read_labels(path: str | os.PathLike, *, key: str | None = None) -> np.ndarray:
    """Read an HxW ground-truth map of whole numbers (0 = unlabelled) as int64, from any format.

    In a GeoTIFF or NetCDF map the no-data value reads as 0, unlabelled.
    """
    path = existing_file(path)
    kind = file_kind(path)
    if kind == "container":
        array, field, _ = read_container(path, key, ndim=2)
        return as_label_array(array, str(path), field)
    if kind == "envi":
        no_key(path, key)
        array, field = open_envi(path).pixels, "image"
        _one_band(path, array.shape[2])
    else:
        with open_source(path, key=key) as source:
            _one_band(path, source.shape[2])
            array, field = source.read(slice(None), slice(None)), source.field
    return as_label_array(array[:, :, 0], str(path), field)


def is_supported(path: Path) -> bool:
    """True for a file that `read_cube` can open: an ENVI header or a known suffix."""
    return path.suffix.lower() in (*CONTAINER_SUFFIXES, *RASTER_SUFFIXES, NETCDF_SUFFIX, ".hdr")


def _one_band(path: Path, bands: int) -> None:
    if bands != 1:
        raise S3FNDataError(f"{path}: image has {bands} bands; expected a 1-band label map")
