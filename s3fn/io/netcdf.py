"""NetCDF cubes: EMIT L1B / L2A read by HDF5 chunks with their band centres, widths and
good-band list; any other NetCDF through GDAL (`s3fn.io.geotiff`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import h5py
import numpy as np

from s3fn.data.cube import check_cube_layout, fwhm_to_nm, wavelengths_to_nm
from s3fn.data.errors import S3FNDataError
from s3fn.io.geotiff import open_raster
from s3fn.io.glt import LookupGrid, read_emit_glt
from s3fn.io.hdf5 import open_hdf5
from s3fn.io.source import ArraySource, CubeSource, Geotransform, attribute_text, hdf5_nodata


def open_netcdf(path: Path, key: str | None) -> CubeSource:
    """A NetCDF file's cube: EMIT's by HDF5 chunks, any other through GDAL."""
    try:
        with h5py.File(path, "r") as handle:
            emit = "sensor_band_parameters" in handle
    except OSError as exc:  # NetCDF classic (v3) is not HDF5; GDAL reads it
        if h5py.is_hdf5(path):  # NetCDF-4 that HDF5 itself cannot open: say why, not GDAL
            raise S3FNDataError(f"{path}: truncated or corrupt NetCDF-4 file ({exc})") from exc
        emit = False
    return open_emit(path, key) if emit else open_raster(path, key, "NetCDF")


def open_emit(path: Path, key: str | None) -> CubeSource:
    """EMIT L1B / L2A NetCDF: the cube as stored (downtrack x crosstrack x bands), its bands
    in the `sensor_band_parameters` group, its grid in the global attributes, and the lookup
    table that places the swath on that grid."""
    container = open_hdf5(path, key, ndim=3)
    try:
        array = container.array
        check_cube_layout(array.shape, array.dtype, str(path), container.name)
        handle = container.handle
        params = handle["sensor_band_parameters"]
        bands = array.shape[2]
        centres = _band_vector(path, params, "wavelengths", bands)
        unit = (
            attribute_text(params["wavelengths"].attrs.get("units"))
            if centres is not None
            else None
        )
        widths = _band_vector(path, params, "fwhm", bands)
        good = _band_vector(path, params, "good_wavelengths", bands)
        where = f"{path}: sensor_band_parameters"
        meta: dict[str, Any] = {
            "wavelengths": container.wavelengths
            if centres is None
            else wavelengths_to_nm(centres, unit, where),
            "fwhm": None
            if widths is None or centres is None
            else fwhm_to_nm(widths, centres, unit, where),
            "good_bands": None if good is None else good != 0,
            "nodata": hdf5_nodata(array),
        }
        meta["crs"], meta["transform"], meta["lookup"] = _emit_georeferencing(
            path, handle, array.shape[:2]
        )
    except BaseException:
        container.close()
        raise
    return ArraySource(array, path, container.name, handle, file_format="NetCDF", **meta)


def _emit_georeferencing(
    path: Path, handle: h5py.File, grid: tuple[int, int]
) -> tuple[str | None, Geotransform | None, LookupGrid | None]:
    """The cube's CRS and geotransform, or the lookup table that places it on the ground.

    EMIT distributes the cube unorthorectified; the global `spatial_ref` and `geotransform`
    describe the orthorectified grid its geometry lookup table (`location/glt_x`, `glt_y`)
    maps the cube onto. A cube on that grid (no table, or one of the cube's own size) is
    georeferenced directly; a swath gets the table, and no CRS of its own.
    """
    wkt, geotransform = handle.attrs.get("spatial_ref"), handle.attrs.get("geotransform")
    if wkt is None or geotransform is None:
        return None, None, None
    values = np.asarray(geotransform, dtype=np.float64).ravel()
    if values.shape != (6,):
        raise S3FNDataError(
            f"{path}: attribute 'geotransform' has {values.size} values; "
            "expected 6 (a GDAL geotransform)"
        )
    crs, transform = attribute_text(wkt), tuple(float(v) for v in values)
    location = handle.get("location")
    if location is None or "glt_x" not in location or location["glt_x"].shape == grid:
        return crs, transform, None  # type: ignore[return-value]
    if "glt_y" not in location:
        raise S3FNDataError(f"{path}: location/glt_x without glt_y; expected both")
    return None, None, read_emit_glt(path, location, grid, crs, transform)  # type: ignore[arg-type]


def _band_vector(path: Path, group: h5py.Group, name: str, bands: int) -> np.ndarray | None:
    if name not in group:
        return None
    values = np.asarray(group[name][()], dtype=np.float64).ravel()
    if values.shape != (bands,):
        raise S3FNDataError(
            f"{path}: {group.name.strip('/')}/{name} has {values.size} values; "
            f"expected {bands}, one per band"
        )
    return values
