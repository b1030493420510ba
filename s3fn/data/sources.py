"""Lazy cube sources: a scene's pixels read window by window, so scenes larger than memory work.

`open_source(path)` opens a file without reading its pixels. ENVI and .npy are memory-mapped;
HDF5, MATLAB v7.3 and EMIT NetCDF are read by HDF5 chunks; GeoTIFF / COG and other NetCDF by
GDAL windows (rasterio); .npz and MATLAB v5, which cannot be mapped, are loaded whole. Each
source also says what the file says about its bands (centres, widths, usable ones) and where
its pixels lie on the ground (CRS as WKT, GDAL geotransform).
"""

from __future__ import annotations

import mmap
import os
import re
import warnings
from pathlib import Path
from types import TracebackType
from typing import Any
from xml.etree import ElementTree

import h5py
import numpy as np
import rasterio
from rasterio.errors import NotGeoreferencedWarning, RasterioIOError
from rasterio.io import DatasetReader
from rasterio.windows import Window

from s3fn.data.containers import HDF5View, Lazy, open_container
from s3fn.data.cube import (
    Cube,
    check_cube_layout,
    check_finite,
    fwhm_to_nm,
    wavelengths_to_nm,
)
from s3fn.data.envi import header_for, open_envi
from s3fn.data.errors import S3FNDataError

CONTAINER_SUFFIXES = (".mat", ".npy", ".npz", ".h5", ".hdf5", ".he5", ".hdf")
RASTER_SUFFIXES = (".tif", ".tiff")
NETCDF_SUFFIX = ".nc"
SUPPORTED = (
    "ENVI (.hdr + data file), MATLAB .mat (v5 or v7.3), .npy, .npz, HDF5 (.h5/.hdf5), "
    "GeoTIFF (.tif/.tiff) or NetCDF (.nc)"
)
Geotransform = tuple[float, float, float, float, float, float]

# EnMAP keeps its band centres and widths in <product>-METADATA.XML beside the image.
_ENMAP_IMAGE = re.compile(r"(?P<product>.+)-SPECTRAL_IMAGE(?:_COG)?", re.IGNORECASE)
_ENMAP_BANDS = "specific/bandCharacterisation/bandID/"
# GDAL writes a multi-band raster to NetCDF as one 2-D variable per band.
_GDAL_BAND_VARIABLE = re.compile(r"Band\d+")


class CubeSource:
    """An HxWxB cube on disk (or in memory), read by windows with `read(rows, cols)`.

    `wavelengths` and `fwhm` are in nm, `good_bands` is True where the file marks a band usable;
    each is None when the file does not say. `crs` (WKT) and `transform` (GDAL geotransform)
    place the pixel grid on the ground, or are None. Close it, or use it as a context manager.
    """

    def __init__(
        self,
        path: Path | None,
        shape: tuple[int, int, int],
        field: str,
        *,
        wavelengths: np.ndarray | None = None,
        fwhm: np.ndarray | None = None,
        good_bands: np.ndarray | None = None,
        crs: str | None = None,
        transform: Geotransform | None = None,
        nodata: tuple[np.ndarray, np.ndarray] | None = None,
        scaling: tuple[np.ndarray, np.ndarray] | None = None,
    ) -> None:
        self.path = path
        self.shape = shape
        self.field = field
        self.wavelengths = wavelengths
        self.fwhm = fwhm
        self.good_bands = good_bands
        self.crs = crs
        self.transform = transform
        self._nodata = nodata  # (value per band, whether the band has one)
        self._scaling = scaling  # (gain, offset) per band: value * gain + offset
        self._closed = False
        self._name = str(path) if path is not None else "in-memory cube"
        per_band = {"wavelengths": wavelengths, "fwhm": fwhm, "good_bands": good_bands}
        for name, values in per_band.items():
            if values is not None and values.shape != (shape[2],):
                raise S3FNDataError(
                    f"{self._name}: {name} has {values.size} values; "
                    f"expected {shape[2]}, one per band"
                )

    def read(self, rows: slice, cols: slice) -> np.ndarray:
        """Pixels `rows` x `cols` as an h x w x B float32 C-contiguous array of its own.

        The file's scaling is applied and its no-data pixels read as 0 (no reflectance, as
        outside an object's mask); NaN or Inf anywhere else raise `S3FNDataError`.
        """
        if self._closed:
            raise ValueError(f"{self._name}: the source is closed")
        height, width, bands = self.shape
        r0, r1 = _span(rows, height, "rows")
        c0, c1 = _span(cols, width, "cols")
        if r1 == r0 or c1 == c0:
            return np.zeros((r1 - r0, c1 - c0, bands), np.float32)
        raw = np.asarray(self._read(r0, r1, c0, c1))
        data = np.array(raw, dtype=np.float32, order="C")
        if self._scaling is not None:
            gain, offset = self._scaling
            data *= gain.astype(np.float32)
            data += offset.astype(np.float32)
        if self._nodata is not None:
            value, defined = self._nodata
            missing = raw == value
            if raw.dtype.kind == "f":
                missing |= np.isnan(raw) & np.isnan(value)
            data[missing & defined] = 0.0
        whole = (r0, r1, c0, c1) == (0, height, 0, width)
        where = self.field if whole else f"{self.field} rows {r0}:{r1}, columns {c0}:{c1}"
        check_finite(data, self._name, where)
        return data

    def close(self) -> None:
        """Release the file; `read` fails afterwards."""
        self._closed = True

    def __enter__(self) -> CubeSource:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self._name!r}, shape={self.shape})"

    def _read(self, r0: int, r1: int, c0: int, c1: int) -> np.ndarray:
        raise NotImplementedError


class _ArraySource(CubeSource):
    """A source over anything sliced like an HxWxB array: a memory map, an HDF5 dataset, or an
    array in memory."""

    def __init__(
        self, array: Lazy, path: Path | None, field: str, handle: h5py.File | None = None, **meta
    ) -> None:
        super().__init__(path, tuple(array.shape), field, **meta)  # type: ignore[arg-type]
        self._array: Lazy | None = array
        self._handle = handle

    def _read(self, r0: int, r1: int, c0: int, c1: int) -> np.ndarray:
        block = np.array(self._array[r0:r1, c0:c1, :])  # type: ignore[index]
        _release_pages(self._array)
        return block

    def close(self) -> None:
        """Release the memory map or close the HDF5 file."""
        super().close()
        self._array = None
        if self._handle is not None:
            self._handle.close()


class _RasterSource(CubeSource):
    """A source read through GDAL windows: the bands of one or more rasterio datasets."""

    def __init__(
        self, parts: list[tuple[DatasetReader, list[int]]], path: Path, field: str, **meta
    ) -> None:
        first = parts[0][0]
        bands = sum(len(indexes) for _, indexes in parts)
        super().__init__(path, (first.height, first.width, bands), field, **meta)
        self._parts = parts

    def _read(self, r0: int, r1: int, c0: int, c1: int) -> np.ndarray:
        window = Window(c0, r0, c1 - c0, r1 - r0)
        stacked = np.concatenate(
            [dataset.read(indexes, window=window) for dataset, indexes in self._parts]
        )
        return np.moveaxis(stacked, 0, -1)  # bands-first on disk -> H x W x B

    def close(self) -> None:
        """Close the GDAL datasets."""
        super().close()
        for dataset, _ in self._parts:
            dataset.close()


def _release_pages(array: Any) -> None:
    """Drop the pages a read touched from this process's memory map: they stay in the page
    cache, but a scene read tile by tile no longer accumulates in the resident set."""
    while array is not None and not isinstance(array, mmap.mmap):
        array = getattr(array, "_mmap", None) or getattr(array, "base", None)
    if isinstance(array, mmap.mmap):
        array.madvise(mmap.MADV_DONTNEED)


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
        return _open_raster(path, None, "GeoTIFF")
    if kind == "netcdf":
        return _open_netcdf(path, key)
    container = open_container(path, key, ndim=3)
    try:
        check_cube_layout(container.array.shape, container.array.dtype, str(path), container.name)
        nodata = _hdf5_nodata(container.array)
    except BaseException:
        container.close()
        raise
    return _ArraySource(
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
        return _ArraySource(
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
    return _ArraySource(array, None, "array", wavelengths=wavelengths)


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


def no_key(path: Path, key: str | None) -> None:
    """Refuse `key` for a file that holds a single cube."""
    if key is not None:
        raise S3FNDataError(f"{path}: this file holds one cube; key={key!r} does not apply")


def _span(index: slice, size: int, what: str) -> tuple[int, int]:
    if not isinstance(index, slice) or index.step not in (None, 1):
        raise ValueError(f"read: {what} must be a slice with step 1, got {index!r}")
    start, stop, _ = index.indices(size)
    return start, max(start, stop)


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
        dataset = _open_gdal(str(image.data_path), image.header_path, "ENVI")
        with dataset:
            crs, transform = _georeferencing(dataset)
    return _ArraySource(
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
    return _open_emit(path, key) if emit else _open_raster(path, key, "NetCDF")


def _open_emit(path: Path, key: str | None) -> CubeSource:
    """EMIT L1B / L2A NetCDF: the cube as stored (downtrack x crosstrack x bands), its bands
    in the `sensor_band_parameters` group, its grid in the global attributes."""
    container = open_container(path, key, ndim=3)
    try:
        array = container.array
        check_cube_layout(array.shape, array.dtype, str(path), container.name)
        handle = container.handle
        params = handle["sensor_band_parameters"]
        bands = array.shape[2]
        centres = _band_vector(path, params, "wavelengths", bands)
        unit = _text(params["wavelengths"].attrs.get("units")) if centres is not None else None
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
            "nodata": _hdf5_nodata(array),
        }
        meta["crs"], meta["transform"] = _emit_georeferencing(path, handle, array.shape[:2])
    except BaseException:
        container.close()
        raise
    return _ArraySource(array, path, container.name, handle, **meta)


def _emit_georeferencing(
    path: Path, handle: h5py.File, grid: tuple[int, int]
) -> tuple[str | None, Geotransform | None]:
    """The global `spatial_ref` and `geotransform`, where they describe the cube's own grid.

    EMIT distributes the cube unorthorectified; its geotransform is that of the orthorectified
    grid its geometry lookup table (`location/glt_x`, `glt_y`) maps the cube onto, so it does
    not apply to a cube whose grid differs from the lookup table's.
    """
    wkt, geotransform = handle.attrs.get("spatial_ref"), handle.attrs.get("geotransform")
    lookup = handle.get("location/glt_x")
    if wkt is None or geotransform is None or (lookup is not None and lookup.shape != grid):
        return None, None
    values = np.asarray(geotransform, dtype=np.float64).ravel()
    if values.shape != (6,):
        raise S3FNDataError(
            f"{path}: attribute 'geotransform' has {values.size} values; "
            "expected 6 (a GDAL geotransform)"
        )
    return _text(wkt), tuple(float(v) for v in values)  # type: ignore[return-value]


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


def _hdf5_nodata(array: Lazy) -> tuple[np.ndarray, np.ndarray] | None:
    """The `_FillValue` of an HDF5 / NetCDF-4 dataset, as no-data for every band."""
    if not isinstance(array, HDF5View) or "_FillValue" not in array.dataset.attrs:
        return None
    value = float(np.asarray(array.dataset.attrs["_FillValue"]).ravel()[0])
    bands = array.shape[2]
    return np.full(bands, value), np.ones(bands, bool)


def _open_raster(path: Path, key: str | None, what: str) -> CubeSource:
    dataset = _open_gdal(str(path), path, what)
    try:
        parts, field = _raster_parts(path, dataset, key, what)
    except BaseException:
        dataset.close()
        raise
    try:
        bands = [(part, index) for part, indexes in parts for index in indexes]
        meta: dict[str, Any] = dict(
            zip(("wavelengths", "fwhm", "good_bands"), _raster_bands(path, bands), strict=True)
        )
        meta["crs"], meta["transform"] = _georeferencing(parts[0][0])
        meta["nodata"], meta["scaling"] = _raster_values(bands)
    except BaseException:
        for part, _ in parts:
            part.close()
        raise
    return _RasterSource(parts, path, field, **meta)


def _raster_parts(
    path: Path, dataset: DatasetReader, key: str | None, what: str
) -> tuple[list[tuple[DatasetReader, list[int]]], str]:
    """The datasets and band numbers that make up the cube, and its name: the file's own
    bands, or those of the variables (GDAL subdatasets) of a NetCDF file."""
    if dataset.count > 0 and not dataset.subdatasets:
        no_key(path, key)
        return [(dataset, list(range(1, dataset.count + 1)))], "image"
    subdatasets = list(dataset.subdatasets)
    names = [sub.rsplit(":", 1)[-1].lstrip("/") for sub in subdatasets]
    chosen = _chosen_variables(path, names, key)
    dataset.close()
    parts: list[tuple[DatasetReader, list[int]]] = []
    try:
        for i in chosen:
            part = _open_gdal(subdatasets[i], path, what)
            parts.append((part, list(range(1, part.count + 1))))
            first = parts[0][0]
            if (part.height, part.width) != (first.height, first.width):
                raise S3FNDataError(
                    f"{path}: variable {names[i]} is {part.height}x{part.width}; "
                    f"expected {first.height}x{first.width} like {names[chosen[0]]}"
                )
    except BaseException:
        for part, _ in parts:
            part.close()
        raise
    return parts, names[chosen[0]] if len(chosen) == 1 else "image"


def _chosen_variables(path: Path, names: list[str], key: str | None) -> list[int]:
    """Which variables hold the cube: `key`, the only one, or GDAL's one variable per band."""
    if key is not None:
        if key.lstrip("/") not in names:
            raise S3FNDataError(
                f"{path}: no variable named {key!r}; expected one of {', '.join(names) or 'none'}"
            )
        return [names.index(key.lstrip("/"))]
    if not names:
        raise S3FNDataError(f"{path}: no raster bands; expected an HxW image with B bands")
    if len(names) == 1 or all(_GDAL_BAND_VARIABLE.fullmatch(n) for n in names):
        return list(range(len(names)))
    raise S3FNDataError(
        f"{path}: {len(names)} variables ({', '.join(names)}); pass key= to choose one"
    )


def _raster_bands(
    path: Path, bands: list[tuple[DatasetReader, int]]
) -> tuple[np.ndarray | None, np.ndarray | None, np.ndarray | None]:
    """Band centres and widths (nm) and usable bands, from wherever the product keeps them.

    In order: per-band `wavelength` / `wavelength_units` / `fwhm` / `bbl` items (GDAL from an
    ENVI header, the EnMAP-Box's GeoTIFFs of EnMAP / PRISMA / EMIT products, NetCDF written by
    GDAL), GDAL's IMAGERY domain `CENTRAL_WAVELENGTH_UM` / `FWHM_UM`, then EnMAP's
    <product>-METADATA.XML beside its SPECTRAL_IMAGE GeoTIFF.
    """
    items = [dataset.tags(index) for dataset, index in bands]
    imagery = [dataset.tags(index, ns="IMAGERY") for dataset, index in bands]
    default_unit = bands[0][0].tags().get("wavelength_units")
    units = [item.get("wavelength_units", default_unit) for item in items]
    centres = _band_items(path, items, "wavelength")
    wavelengths = fwhm = None
    if centres is not None:
        wavelengths, fwhm = _to_nm(centres, _band_items(path, items, "fwhm"), units, path)
    else:
        centres_um = _band_items(path, imagery, "CENTRAL_WAVELENGTH_UM")
        if centres_um is not None:
            wavelengths = centres_um * 1000.0
        else:
            enmap = _enmap_bands(path, len(bands))
            if enmap is not None:
                wavelengths, fwhm = enmap
    if fwhm is None and wavelengths is not None:
        widths_um = _band_items(path, imagery, "FWHM_UM")
        fwhm = None if widths_um is None else widths_um * 1000.0
    bbl = _band_items(path, items, "bbl")
    return wavelengths, fwhm, None if bbl is None else bbl != 0


def _band_items(path: Path, items: list[dict[str, str]], name: str) -> np.ndarray | None:
    """The numeric item `name` of every band, None when no band has it."""
    present = [name in item for item in items]
    if not any(present):
        return None
    if not all(present):
        raise S3FNDataError(
            f"{path}: band metadata item '{name}' is on {sum(present)} of {len(items)} bands; "
            "expected one per band"
        )
    try:
        return np.array([float(item[name]) for item in items], dtype=np.float64)
    except ValueError as exc:
        raise S3FNDataError(
            f"{path}: band metadata item '{name}' is not numeric ({exc}); expected numbers"
        ) from exc


def _to_nm(
    centres: np.ndarray, widths: np.ndarray | None, units: list[str | None], path: Path
) -> tuple[np.ndarray | None, np.ndarray | None]:
    """Band centres and widths in nm, each band converted from its own unit."""
    wavelengths = np.empty_like(centres)
    fwhm = None if widths is None else np.empty_like(widths)
    for unit in dict.fromkeys(units):
        chosen = np.array([u == unit for u in units])
        converted = wavelengths_to_nm(centres[chosen], unit, str(path))
        if converted is None:  # band numbers ("Index"), not wavelengths
            return None, None
        wavelengths[chosen] = converted
        if fwhm is not None and widths is not None:
            fwhm[chosen] = fwhm_to_nm(widths[chosen], centres[chosen], unit, str(path))
    return wavelengths, fwhm


def _enmap_bands(path: Path, bands: int) -> tuple[np.ndarray, np.ndarray | None] | None:
    """Band centres and FWHM (nm) from EnMAP's metadata file beside its spectral image."""
    match = _ENMAP_IMAGE.fullmatch(path.stem)
    if match is None:
        return None
    candidates = [path.with_name(f"{match['product']}-METADATA{ext}") for ext in (".XML", ".xml")]
    metadata = next((c for c in candidates if c.is_file()), None)
    if metadata is None:
        return None
    try:
        root = ElementTree.parse(metadata).getroot()
        centres, widths = (
            [float(e.text or "") for e in root.findall(_ENMAP_BANDS + tag)]
            for tag in ("wavelengthCenterOfBand", "FWHMOfBand")
        )
    except (ElementTree.ParseError, ValueError) as exc:
        raise S3FNDataError(f"{metadata}: not a readable EnMAP metadata file ({exc})") from exc
    if len(centres) != bands:
        raise S3FNDataError(
            f"{metadata}: bandCharacterisation lists {len(centres)} wavelengthCenterOfBand; "
            f"expected {bands}, one per band of {path.name}"
        )
    return np.array(centres), np.array(widths) if len(widths) == bands else None


def _raster_values(
    bands: list[tuple[DatasetReader, int]],
) -> tuple[tuple[np.ndarray, np.ndarray] | None, tuple[np.ndarray, np.ndarray] | None]:
    """Per-band no-data values and GDAL scale / offset, None where no band has any."""
    nodata = [dataset.nodatavals[index - 1] for dataset, index in bands]
    gain = np.array([dataset.scales[index - 1] for dataset, index in bands], dtype=np.float64)
    offset = np.array([dataset.offsets[index - 1] for dataset, index in bands], dtype=np.float64)
    defined = np.array([v is not None for v in nodata])
    values = np.array([0.0 if v is None else v for v in nodata], dtype=np.float64)
    scaled = bool(np.any(gain != 1.0) or np.any(offset != 0.0))
    return (values, defined) if defined.any() else None, (gain, offset) if scaled else None


def _open_gdal(target: str, path: Path, what: str) -> DatasetReader:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", NotGeoreferencedWarning)
            return rasterio.open(target)
    except RasterioIOError as exc:
        raise S3FNDataError(f"{path}: not a readable {what} file ({exc})") from exc


def _georeferencing(dataset: DatasetReader) -> tuple[str | None, Geotransform | None]:
    """(CRS as WKT, GDAL geotransform) of a GDAL dataset, None for what it lacks."""
    crs = dataset.crs.to_wkt() if dataset.crs else None
    if crs is None and dataset.transform.is_identity:
        return None, None
    return crs, tuple(dataset.transform.to_gdal())  # type: ignore[return-value]


def _text(value: object) -> str | None:
    if value is None:
        return None
    if isinstance(value, bytes):
        return value.decode()
    return str(value)
