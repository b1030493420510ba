"""The lazy cube source: an HxWxB cube read window by window, and its in-memory / mapped kind,
with the lazy view of an HDF5 dataset they read from.

The reader of each format (`s3fn.io.envi`, `s3fn.io.geotiff`, `s3fn.io.netcdf`, the containers)
builds these; `s3fn.io.open_source` picks the reader.
"""

from __future__ import annotations

import math
import mmap
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

import h5py
import numpy as np

from s3fn.data.cube import check_finite
from s3fn.data.errors import S3FNDataError
from s3fn.data.nodata import spread_nodata

if TYPE_CHECKING:
    from s3fn.io.glt import LookupGrid

Geotransform = tuple[float, float, float, float, float, float]


class HDF5View:
    """An HDF5 dataset seen as the array it holds, read only where sliced; `transpose` reverses
    its axes (MATLAB v7.3 stores arrays column-major)."""

    def __init__(self, dataset: h5py.Dataset, transpose: bool) -> None:
        self.dataset = dataset
        self.transpose = transpose
        self.shape: tuple[int, ...] = dataset.shape[::-1] if transpose else dataset.shape
        self.dtype = dataset.dtype
        self.ndim = len(self.shape)

    def __getitem__(self, index: tuple[slice, ...]) -> np.ndarray:
        if self.transpose:
            return self.dataset[tuple(index)[::-1]].T
        return self.dataset[index]

    def __array__(self, dtype: np.dtype | None = None, copy: bool | None = None) -> np.ndarray:
        return np.asarray(self[()], dtype=dtype)


Lazy = np.ndarray | HDF5View


class CubeSource:
    """An HxWxB cube on disk (or in memory), read by windows with `read(rows, cols)`.

    `wavelengths` and `fwhm` are in nm, `good_bands` is True where the file marks a band usable;
    each is None when the file does not say. `crs` (WKT) and `transform` (GDAL geotransform)
    place the pixel grid on the ground, or are None. `lookup` is the geometry lookup table of
    an unorthorectified swath (EMIT), which places it on a georeferenced grid instead; maps are
    written on that grid. `file_format` names the format in the message of a read that fails.
    Close it, or use it as a context manager.
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
        lookup: LookupGrid | None = None,
        file_format: str | None = None,
    ) -> None:
        self.path = path
        self.file_format = file_format
        self.shape = shape
        self.field = field
        self.wavelengths = wavelengths
        self.fwhm = fwhm
        self.good_bands = good_bands
        self.crs = crs
        self.transform = transform
        self.lookup = lookup
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

    def read(self, rows: slice, cols: slice, *, nodata: float = math.nan) -> np.ndarray:
        """Pixels `rows` x `cols` as an h x w x B float32 C-contiguous array of its own.

        The file's scaling is applied. A pixel is no data where any band is NaN or equals the
        file's no-data value for that band (`s3fn.data.nodata`); every band of it reads as
        `nodata` (NaN by default; 0 for label maps, where no data is unlabelled). Inf raises
        `S3FNDataError`, and so does a block the file cannot give (truncated or corrupt),
        naming the file: a scene read tile by tile may be broken only past its first tiles.
        """
        if self._closed:
            raise ValueError(f"{self._name}: the source is closed")
        height, width, bands = self.shape
        r0, r1 = _span(rows, height, "rows")
        c0, c1 = _span(cols, width, "cols")
        if r1 == r0 or c1 == c0:
            return np.zeros((r1 - r0, c1 - c0, bands), np.float32)
        try:
            raw = np.asarray(self._read(r0, r1, c0, c1))
        except OSError as exc:  # GDAL's and HDF5's read errors
            raise S3FNDataError(
                f"{self._name}: truncated or corrupt {self.file_format or 'file'} (reading rows "
                f"{r0}:{r1}, columns {c0}:{c1}: {_innermost_reason(exc)})"
            ) from exc
        data = np.array(raw, dtype=np.float32, order="C")
        if self._scaling is not None:
            gain, offset = self._scaling
            data *= gain.astype(np.float32)
            data += offset.astype(np.float32)
        missing = None
        if self._nodata is not None:
            value, defined = self._nodata
            missing = (raw == value) & defined
        spread_nodata(data, missing)
        whole = (r0, r1, c0, c1) == (0, height, 0, width)
        where = self.field if whole else f"{self.field} rows {r0}:{r1}, columns {c0}:{c1}"
        check_finite(data, self._name, where, nan_ok=True)
        if not math.isnan(nodata):
            data[np.isnan(data)] = nodata
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


class ArraySource(CubeSource):
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


def _innermost_reason(exc: BaseException) -> str:
    """The message of the innermost cause: the reader's own words, where rasterio wraps GDAL's
    in 'Read failed. See previous exception for details.'"""
    while exc.__cause__ is not None:
        exc = exc.__cause__
    return " ".join(str(exc).split()) or type(exc).__name__


def _release_pages(array: Any) -> None:
    """Drop the pages a read touched from this process's memory map: they stay in the page
    cache, but a scene read tile by tile no longer accumulates in the resident set."""
    while array is not None and not isinstance(array, mmap.mmap):
        array = getattr(array, "_mmap", None) or getattr(array, "base", None)
    if isinstance(array, mmap.mmap):
        array.madvise(mmap.MADV_DONTNEED)


def _span(index: slice, size: int, what: str) -> tuple[int, int]:
    if not isinstance(index, slice) or index.step not in (None, 1):
        raise ValueError(f"read: {what} must be a slice with step 1, got {index!r}")
    start, stop, _ = index.indices(size)
    return start, max(start, stop)


def hdf5_nodata(array: Lazy) -> tuple[np.ndarray, np.ndarray] | None:
    """The `_FillValue` of an HDF5 / NetCDF-4 dataset, as no-data for every band."""
    if not isinstance(array, HDF5View) or "_FillValue" not in array.dataset.attrs:
        return None
    value = float(np.asarray(array.dataset.attrs["_FillValue"]).ravel()[0])
    bands = array.shape[2]
    return np.full(bands, value), np.ones(bands, bool)


def no_key(path: Path, key: str | None) -> None:
    """Refuse `key` for a file that holds a single cube."""
    if key is not None:
        raise S3FNDataError(f"{path}: this file holds one cube; key={key!r} does not apply")


def attribute_text(value: object) -> str | None:
    """A file attribute as text (bytes decoded), or None."""
    if value is None:
        return None
    if isinstance(value, bytes):
        return value.decode()
    return str(value)
