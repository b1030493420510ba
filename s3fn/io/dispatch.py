"""One entry point for every supported file format: the format follows the suffix (and, for
HDF5, a product's layout).

`open_source(path)` opens a file without reading its pixels. ENVI and .npy are memory-mapped;
HDF5, MATLAB v7.3, PRISMA L2D and EMIT NetCDF are read by HDF5 chunks; GeoTIFF / COG and other
NetCDF by GDAL windows (rasterio); .npz and MATLAB v5, which cannot be mapped, are loaded
whole. Each source also says what the file says about its bands (centres, widths, usable ones)
and where its pixels lie on the ground (CRS as WKT, GDAL geotransform). `read_cube` and
`read_labels` read a whole cube or label map; `open_map_writer` writes a class map as GeoTIFF
or ENVI.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from s3fn.data.cube import Cube, as_label_array, check_cube_layout
from s3fn.data.errors import S3FNDataError
from s3fn.io.containers import ContainerArray
from s3fn.io.envi import EnviMapWriter, header_for, open_envi, open_envi_source
from s3fn.io.geotiff import GeoTiffMapWriter, open_raster
from s3fn.io.hdf5 import open_hdf5
from s3fn.io.map_writer import LABELS, MapWriter
from s3fn.io.mat import open_mat
from s3fn.io.netcdf import open_netcdf
from s3fn.io.npy import open_npy, open_npz
from s3fn.io.prisma import is_prisma, open_prisma
from s3fn.io.source import ArraySource, CubeSource, Geotransform, hdf5_nodata, no_key

CONTAINER_SUFFIXES = (".mat", ".npy", ".npz", ".h5", ".hdf5", ".he5", ".hdf")

# Container suffixes of plain HDF5 files, which may hold a product with a layout of its own.
HDF5_SUFFIXES = (".h5", ".hdf5", ".he5", ".hdf")

GEOTIFF_SUFFIXES = (".tif", ".tiff")

# The suffixes `open_map_writer` writes as ENVI; any data file with a .hdr beside it reads as ENVI.
ENVI_SUFFIXES = (".hdr", ".img", ".dat", ".bsq", ".bip", ".raw", ".bin")

NETCDF_SUFFIX = ".nc"

SUPPORTED = (
    "ENVI (.hdr + data file), MATLAB .mat (v5 or v7.3), .npy, .npz, HDF5 (.h5/.hdf5), "
    "GeoTIFF (.tif/.tiff) or NetCDF (.nc)"
)


def open_source(path: str | os.PathLike, *, key: str | None = None) -> CubeSource:
    """Open the HxWxB cube in `path` (any supported format) for reading by windows.

    `key` names the array inside a .mat / .npz / HDF5 file, or the variable of a NetCDF file,
    when it holds more than one. An HDF5 file laid out as PRISMA L2D reads, without a key, as
    its merged VNIR + SWIR reflectance cube (`s3fn.io.prisma`).
    """
    path = existing_file(path)
    kind = file_kind(path)
    if key is None and path.suffix.lower() in HDF5_SUFFIXES and is_prisma(path):
        return open_prisma(path)
    if kind == "envi":
        no_key(path, key)
        return open_envi_source(path)
    if kind == "geotiff":
        no_key(path, key)
        return open_raster(path, None, "GeoTIFF")
    if kind == "netcdf":
        return open_netcdf(path, key)
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
        file_format="HDF5" if container.handle is not None else path.suffix.lower(),
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

    In a GeoTIFF or NetCDF map no data (the declared value, or NaN) reads as 0, unlabelled.
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
            array, field = source.read(slice(None), slice(None), nodata=0.0), source.field
    return as_label_array(array[:, :, 0], str(path), field)


def is_supported(path: Path) -> bool:
    """True for a file that `read_cube` can open: an ENVI header or a known suffix."""
    return path.suffix.lower() in (*CONTAINER_SUFFIXES, *GEOTIFF_SUFFIXES, NETCDF_SUFFIX, ".hdr")


def open_map_writer(
    path: str | os.PathLike,
    *,
    height: int,
    width: int,
    class_names: Sequence[str],
    crs: str | None = None,
    transform: Geotransform | None = None,
    kind: str = LABELS,
) -> MapWriter:
    """A writer of an H x W label (`kind="labels"`) or probability map at `path`.

    The format follows the suffix: .tif / .tiff for GeoTIFF, .hdr / .img / .dat (...) for
    ENVI. `crs` (WKT or "EPSG:n") and `transform` (GDAL geotransform) come from the input
    cube's source; without them the map is written plain, not georeferenced.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix in GEOTIFF_SUFFIXES:
        writer: type[MapWriter] = GeoTiffMapWriter
    elif suffix in ENVI_SUFFIXES:
        writer = EnviMapWriter
    else:
        raise S3FNDataError(
            f"{path}: unsupported map format {suffix or '(no suffix)'!r}; expected "
            f"GeoTIFF ({', '.join(GEOTIFF_SUFFIXES)}) or ENVI ({', '.join(ENVI_SUFFIXES)})"
        )
    return writer(path, height, width, class_names, kind, crs, transform)


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
    if suffix in GEOTIFF_SUFFIXES:
        return "geotiff"
    if suffix == NETCDF_SUFFIX:
        return "netcdf"
    if header_for(path) is not None:
        return "envi"
    raise S3FNDataError(
        f"{path}: unsupported format {suffix or '(no suffix)'!r}; expected {SUPPORTED}"
    )


def open_container(path: Path, key: str | None, ndim: int) -> ContainerArray:
    """Open the `ndim`-D array `key` (or the only one) of a .npy / .npz / .mat / HDF5 file.

    .npy is memory-mapped and HDF5 (MATLAB v7.3 too) read by slices; .npz and MATLAB v5,
    which cannot be mapped, are loaded whole.
    """
    suffix = path.suffix.lower()
    if suffix == ".npy":
        return open_npy(path, key)
    if suffix == ".npz":
        return open_npz(path, key, ndim)
    if suffix == ".mat":
        return open_mat(path, key, ndim)
    return open_hdf5(path, key, ndim)


def read_container(
    path: Path, key: str | None, ndim: int
) -> tuple[np.ndarray, str, np.ndarray | None]:
    """Read the `ndim`-D array `key` (or the only one): (array, its name, wavelengths or None)."""
    container = open_container(path, key, ndim)
    try:
        return np.asarray(container.array), container.name, container.wavelengths
    finally:
        container.close()


def _one_band(path: Path, bands: int) -> None:
    if bands != 1:
        raise S3FNDataError(f"{path}: image has {bands} bands; expected a 1-band label map")
