"""Lazy cube sources: a scene's pixels read window by window, so scenes larger than memory work.

`open_source(path)` opens a file without reading its pixels. ENVI and .npy are memory-mapped;
HDF5, MATLAB v7.3 and EMIT NetCDF are read by HDF5 chunks; GeoTIFF / COG and other NetCDF by
GDAL windows (rasterio); .npz and MATLAB v5, which cannot be mapped, are loaded whole. Each
source also says what the file says about its bands (centres, widths, usable ones) and where
its pixels lie on the ground (CRS as WKT, GDAL geotransform).
"""

from __future__ import annotations

import os
from pathlib import Path

import h5py
import numpy as np

from s3fn.data.containers import open_container
from s3fn.data.cube import Cube, check_cube_layout
from s3fn.data.cube_source import ArraySource, CubeSource, Geotransform, hdf5_nodata, no_key
from s3fn.data.emit import open_emit
from s3fn.data.envi import header_for, open_envi
from s3fn.data.errors import S3FNDataError
from s3fn.data.rasters import georeferencing, open_gdal, open_raster

__all__ = ["CubeSource", "Geotransform", "from_array", "open_source"]


CONTAINER_SUFFIXES = (".mat", ".npy", ".npz", ".h5", ".hdf5", ".he5", ".hdf")

RASTER_SUFFIXES = (".tif", ".tiff")

NETCDF_SUFFIX = ".nc"

SUPPORTED = (
    "ENVI (.hdr + data file), MATLAB .mat (v5 or v7.3), .npy, .npz, HDF5 (.h5/.hdf5), "
    "GeoTIFF (.tif/.tiff) or NetCDF (.nc)"
)


def open_source(path: str | os.PathLike, *, key: str | None = None) -> CubeSource:
    """Open the HxWxB cube in `path` (any supported format) for reading by windows.

    `key` names the array inside a .mat / .npz / HDF5 file, or the variable of a NetCDF file,
    when it holds more than one.
    """
    path = existing_file(path)
    kind = file_kind(path)
    if kind == "envi":
        no_key(path, key)
        return _open_envi(path)
    if kind == "geotiff":
        no_key(path, key)
        return open_raster(path, None, "GeoTIFF")
    if kind == "netcdf":
        return _open_netcdf(path, key)
    container = open_container(path, key, ndim=3)
    try:
        check_cube_layout(container.array.shape, container.array.dtype, str(path), container.name)
        nodata = hdf5_nodata(container.array)
    except BaseException:
        container.close()
        raise
    return ArraySource(
        container.array,
        path,
        container.name,
        container.handle,
        wavelengths=container.wavelengths,
        nodata=nodata,
    )


def from_array(array: np.ndarray | Cube, wavelengths: np.ndarray | None = None) -> CubeSource:
    """A source over an HxWxB array (or a `Cube`, with its band metadata) already in memory."""
    if isinstance(array, Cube):
        return ArraySource(
            array.data,
            None,
            "array",
            wavelengths=array.wavelengths if wavelengths is None else wavelengths,
            fwhm=array.fwhm,
            good_bands=array.good_bands,
        )
    array = np.asarray(array)
    check_cube_layout(array.shape, array.dtype, "in-memory cube", "array")
    if wavelengths is not None:
        wavelengths = np.asarray(wavelengths, dtype=np.float64)
    return ArraySource(array, None, "array", wavelengths=wavelengths)


def existing_file(path: str | os.PathLike) -> Path:
    """`path` as a Path, or FileNotFoundError naming it."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: file not found")
    return path


def file_kind(path: Path) -> str:
    """'envi', 'container', 'geotiff' or 'netcdf', from the suffix or an ENVI header beside."""
    suffix = path.suffix.lower()
    if suffix == ".hdr":
        return "envi"
    if suffix in CONTAINER_SUFFIXES:
        return "container"
    if suffix in RASTER_SUFFIXES:
        return "geotiff"
    if suffix == NETCDF_SUFFIX:
        return "netcdf"
    if header_for(path) is not None:
        return "envi"
    raise S3FNDataError(
        f"{path}: unsupported format {suffix or '(no suffix)'!r}; expected {SUPPORTED}"
    )


def _open_envi(path: Path) -> CubeSource:
    image = open_envi(path)
    bands = image.pixels.shape[2]
    scaling = None
    if image.scale not in (0.0, 1.0):
        scaling = (np.full(bands, 1.0 / image.scale), np.zeros(bands))
    nodata = None
    if image.ignore_value is not None:
        nodata = (np.full(bands, image.ignore_value), np.ones(bands, bool))
    crs, transform = None, None
    if "map info" in image.header or "coordinate system string" in image.header:
        # GDAL reads ENVI map info for every projection ENVI writes; reuse it, don't re-parse it.
        dataset = open_gdal(str(image.data_path), image.header_path, "ENVI")
        with dataset:
            crs, transform = georeferencing(dataset)
    return ArraySource(
        image.pixels,
        path,
        "image",
        wavelengths=image.wavelengths,
        fwhm=image.fwhm,
        good_bands=image.good_bands,
        crs=crs,
        transform=transform,
        nodata=nodata,
        scaling=scaling,
    )


def _open_netcdf(path: Path, key: str | None) -> CubeSource:
    try:
        with h5py.File(path, "r") as handle:
            emit = "sensor_band_parameters" in handle
    except OSError:  # NetCDF classic (v3) is not HDF5; GDAL reads it
        emit = False
    return open_emit(path, key) if emit else open_raster(path, key, "NetCDF")
