"""The in-memory hyperspectral cube and the checks every reader applies to what it read."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from s3fn.data.errors import S3FNDataError

_MICROMETRE_UNITS = {
    "micrometers",
    "micrometer",
    "micrometres",
    "micrometre",
    "microns",
    "micron",
    "um",
    "µm",
    "μm",
}
_NANOMETRE_UNITS = {"nanometers", "nanometer", "nanometres", "nanometre", "nm"}
_MILLIMETRE_UNITS = {"millimeters", "millimeter", "millimetres", "millimetre", "mm"}
_WAVENUMBER_UNITS = {"wavenumber", "cm-1", "1/cm"}


@dataclass(frozen=True, eq=False)
class Cube:
    """A hyperspectral image: `data` is HxWxB float32 and `wavelengths` the B band centres in nm.

    `wavelengths`, `fwhm` (band widths in nm) and `good_bands` (True where the file marks a band
    usable) are None when the file does not say.
    """

    data: np.ndarray
    wavelengths: np.ndarray | None = None
    fwhm: np.ndarray | None = None
    good_bands: np.ndarray | None = None

    def __post_init__(self) -> None:
        if self.data.ndim != 3 or self.data.dtype != np.float32:
            raise S3FNDataError(
                f"Cube: data is {self.data.ndim}-D {self.data.dtype}; expected HxWxB float32"
            )
        for name in ("wavelengths", "fwhm", "good_bands"):
            values = getattr(self, name)
            if values is not None and values.shape != (self.data.shape[2],):
                raise S3FNDataError(
                    f"Cube: {name} has shape {values.shape}; "
                    f"expected ({self.data.shape[2]},), one per band"
                )

    @property
    def shape(self) -> tuple[int, int, int]:
        """(H, W, B)."""
        return self.data.shape  # type: ignore[return-value]

    @property
    def n_bands(self) -> int:
        """Number of spectral bands B."""
        return self.data.shape[2]


def as_cube_array(array: np.ndarray, source: str, field: str) -> np.ndarray:
    """Check that `array` is a real 3-D cube without Inf and return it as C-contiguous float32,
    NaN in every band of a pixel where any band is NaN (no data, `s3fn.data.nodata`)."""
    check_cube_layout(array.shape, array.dtype, source, field)
    data = np.ascontiguousarray(array, dtype=np.float32)
    if not data.flags.writeable:  # still a read-only view of a memory-mapped file
        data = data.copy()
    check_finite(data, source, field, nan_ok=True)
    nan = np.isnan(data)
    if nan.any():
        partial = nan.any(axis=2) & ~nan.all(axis=2)
        if partial.any():
            if np.shares_memory(data, array):  # the caller's own array: left as it is
                data = data.copy()
            data[partial] = np.nan
    return data


def check_cube_layout(shape: tuple[int, ...], dtype: np.dtype, source: str, field: str) -> None:
    """Raise unless an array of this shape and dtype is a 3-D HxWxB cube of real numbers."""
    if len(shape) != 3:
        raise S3FNDataError(
            f"{source}: {field} is {len(shape)}-D {tuple(shape)}; expected a 3-D HxWxB cube"
        )
    dtype = np.dtype(dtype)
    if not (np.issubdtype(dtype, np.number) or dtype == np.bool_) or np.issubdtype(
        dtype, np.complexfloating
    ):
        raise S3FNDataError(f"{source}: {field} has dtype {dtype}; expected real numbers")


def check_finite(data: np.ndarray, source: str, field: str, *, nan_ok: bool = False) -> None:
    """Raise if `data` holds NaN or Inf, saying how many and where the first one is; with
    `nan_ok`, only Inf (cubes, where NaN marks no data)."""
    finite = np.isfinite(data)
    if finite.all():
        return
    nan = np.isnan(data)
    bad = ~finite & ~nan if nan_ok else ~finite
    if not bad.any():
        return
    n_nan = int(nan.sum())
    n_inf = int((~finite).sum()) - n_nan
    where = np.unravel_index(int(np.argmax(bad)), data.shape)
    position = ", ".join(
        f"{axis} {int(i)}" for axis, i in zip(("row", "column", "band"), where, strict=False)
    )
    counted = f"{n_inf} Inf values" if nan_ok else f"{n_nan} NaN and {n_inf} Inf values"
    expected = "finite values or NaN (no data)" if nan_ok else "finite values"
    raise S3FNDataError(
        f"{source}: {field} has {counted} (first at {position}); expected {expected}"
    )


def as_label_array(array: np.ndarray, source: str, field: str) -> np.ndarray:
    """Check that `array` is a 2-D map of non-negative whole numbers and return it as int64."""
    if array.ndim != 2:
        raise S3FNDataError(
            f"{source}: {field} is {array.ndim}-D {tuple(array.shape)}; "
            "expected a 2-D HxW label map"
        )
    if array.dtype == np.bool_:
        return array.astype(np.int64)
    if not np.issubdtype(array.dtype, np.integer):
        if not np.issubdtype(array.dtype, np.floating):
            raise S3FNDataError(f"{source}: {field} has dtype {array.dtype}; expected integers")
        check_finite(array, source, field)
        fractional = array != np.round(array)
        if fractional.any():
            r, c = np.argwhere(fractional)[0]
            raise S3FNDataError(
                f"{source}: {field} has {int(fractional.sum())} non-integer labels "
                f"(first {float(array[r, c]):g} at row {r}, column {c}); expected whole numbers"
            )
    labels = array.astype(np.int64)
    if labels.size and labels.min() < 0:
        r, c = np.argwhere(labels < 0)[0]
        raise S3FNDataError(
            f"{source}: {field} has negative label {labels[r, c]} at row {r}, column {c}; "
            "expected 0 (unlabelled) or a class number >= 1"
        )
    return labels


def wavelengths_to_nm(values: np.ndarray, unit: str | None, source: str) -> np.ndarray | None:
    """Convert band centres to nanometres; with no unit, values below 100 are taken as µm.

    Returns None for band indices (unit "Index"), which are not wavelengths.
    """
    values = np.asarray(values, dtype=np.float64)
    if _unit_key(unit) in _WAVENUMBER_UNITS:
        return 1e7 / values
    factor = _nm_per_unit(values, unit, source)
    return None if factor is None else values * factor


def fwhm_to_nm(
    fwhm: np.ndarray, centres: np.ndarray, unit: str | None, source: str
) -> np.ndarray | None:
    """Convert band widths to nanometres; they are in the unit of the band centres `centres`
    (as stored, before conversion), whose values decide an unnamed unit as in `wavelengths_to_nm`.
    """
    fwhm = np.asarray(fwhm, dtype=np.float64)
    centres = np.asarray(centres, dtype=np.float64)
    if _unit_key(unit) in _WAVENUMBER_UNITS:
        return 1e7 * fwhm / centres**2
    factor = _nm_per_unit(centres, unit, source)
    return None if factor is None else fwhm * factor


def _unit_key(unit: str | None) -> str:
    return (unit or "").strip().lower()


def _nm_per_unit(centres: np.ndarray, unit: str | None, source: str) -> float | None:
    key = _unit_key(unit)
    if key == "index":
        return None
    if key in _MICROMETRE_UNITS:
        return 1000.0
    if key in _NANOMETRE_UNITS:
        return 1.0
    if key in _MILLIMETRE_UNITS:
        return 1e6
    if key in {"", "unknown"}:
        return 1000.0 if centres.size and centres.max() < 100.0 else 1.0
    raise S3FNDataError(
        f"{source}: wavelength units {unit!r} are not a length; expected nanometers or micrometers"
    )
