"""Band resampling between two band sets by Gaussian spectral response functions (SRFs).

A classifier is trained on fixed band centres; a cube from another sensor, or with a subset of
the bands, has to be mapped onto them first. `BandResampler.between` builds the B_source x
B_target matrix that does so: each target band is a Gaussian SRF (its centre and FWHM), each
source band is a Gaussian response of its own FWHM, a source band's weight is the target SRF
integrated over that response, and each target's weights are normalised to sum to 1. A band
set that equals the target within 1 nm gives the identity; a target band that the source
already has (centre and FWHM both within 1 nm) is taken as it is, not smoothed with its
neighbours. Target bands that the source does not cover are refused, except edge bands (beyond
the source's lowest or highest centre) within a tolerance: those take the value of the nearest
covered target band, with a `BandFillWarning` naming them. Interior gaps are never filled.

Wavelengths are band centres in nm, in any order (the matrix keeps the order given: rows follow
the source bands, columns the target bands); a missing FWHM is estimated as the distance to the
nearest neighbouring band.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import numpy.typing as npt
import torch
from scipy.special import ndtr

from s3fn.data.errors import S3FNDataError

SAME_BAND_NM = 1.0
"""Band centres (and, band by band, FWHMs too) that differ by at most this many nm are the same."""
MIN_COVERED_WEIGHT = 0.5
"""A target band needs at least this fraction of its SRF inside the source's wavelength range."""
# By default an edge band may lie EDGE_TOLERANCE_NM nm, or EDGE_TOLERANCE_FWHMS of its own FWHMs,
# outside the source's range (whichever is larger): an airborne sensor's range against a
# spaceborne one's.
EDGE_TOLERANCE_NM = 20.0
EDGE_TOLERANCE_FWHMS = 2.0

_FWHM_PER_SIGMA = 2.0 * math.sqrt(2.0 * math.log(2.0))
_MAX_RANGES_NAMED = 4


class BandFillWarning(UserWarning):
    """Target bands just outside the cube's range were filled from the nearest covered band."""


class BandResampler:
    """Maps (..., B_source) spectra to (..., B_target) bands: out = pixels @ matrix.

    Build it with `between`. `matrix` is B_source x B_target float64, non-negative, each column
    summing to 1; `apply` skips the product for the identity and uses indexing for a selection.
    """

    def __init__(self, matrix: npt.ArrayLike) -> None:
        self.matrix = np.array(matrix, dtype=np.float64)
        if self.matrix.ndim != 2 or 0 in self.matrix.shape or not np.isfinite(self.matrix).all():
            raise S3FNDataError(
                f"BandResampler: matrix of shape {self.matrix.shape}; "
                "expected a finite B_source x B_target matrix"
            )
        self.matrix.flags.writeable = False
        self._matrix32 = self.matrix.astype(np.float32)
        self._index = _selection(self.matrix)

    @classmethod
    def between(
        cls,
        source_wavelengths: npt.ArrayLike,
        target_wavelengths: npt.ArrayLike,
        *,
        source_fwhm: npt.ArrayLike | None = None,
        target_fwhm: npt.ArrayLike | None = None,
        band_tolerance: float | None = None,
        where: str = "cube",
    ) -> BandResampler:
        """The resampler from source band centres (nm) to target band centres (nm).

        FWHMs (nm, one per band or one for all) are estimated from the band spacing when None.
        Uncovered target bands below the lowest or above the highest source centre by at most
        `band_tolerance` nm (None: 20 nm or two of the band's FWHMs, whichever is larger) are
        filled (see `_fill_edges`) with a `BandFillWarning`. `where` names the source (a file)
        at the start of every message. Raises `S3FNDataError` on bad wavelengths or FWHMs and
        on any other target band the source does not cover.
        """
        if band_tolerance is not None and not 0 <= band_tolerance < math.inf:
            raise ValueError(f"band_tolerance={band_tolerance}; expected a finite number >= 0 (nm)")
        source = _wavelengths(source_wavelengths, where, "wavelengths")
        target = _wavelengths(target_wavelengths, where, "target wavelengths")
        source_given = _given_fwhm(source_fwhm, source.shape, where, "fwhm")
        target_given = _given_fwhm(target_fwhm, target.shape, where, "target fwhm")
        source_order, target_order = np.argsort(source), np.argsort(target)
        if len(source) == len(target) and np.all(
            np.abs(source[source_order] - target[target_order]) <= SAME_BAND_NM
        ):
            matrix = np.zeros((len(source), len(target)))
            matrix[source_order, target_order] = 1.0
            return cls(matrix)
        source_width = _fwhm(source_given, source, where, "wavelengths")
        target_width = _fwhm(target_given, target, where, "target wavelengths")
        same = (np.abs(source[:, None] - target[None, :]) <= SAME_BAND_NM) & (
            np.abs(source_width[:, None] - target_width[None, :]) <= SAME_BAND_NM
        )
        missing = _missing(source, source_width, target, target_width, same.any(axis=0))
        tolerance = _tolerance(band_tolerance, target_width)
        edges = _fillable_edges(source, target, missing, tolerance)
        if (missing & ~edges).any():
            raise _refusal(source, source_width, target, missing, where)
        matrix = _srf_weights(source, source_width, target, target_width)
        kept = np.flatnonzero(same.any(axis=0))
        matrix[:, kept] = 0.0
        matrix[same[:, kept].argmax(axis=0), kept] = 1.0
        if edges.any():
            _fill_edges(matrix, source, source_width, target, edges, where)
        return cls(matrix)

    @property
    def is_identity(self) -> bool:
        """True when the matrix is the identity, so `apply` returns its input (as float32)."""
        return self._index is not None and np.array_equal(self._index, np.arange(self.n_source))

    @property
    def n_source(self) -> int:
        """Number of bands the resampler reads."""
        return self.matrix.shape[0]

    @property
    def n_target(self) -> int:
        """Number of bands the resampler writes."""
        return self.matrix.shape[1]

    def apply(
        self, pixels: np.ndarray | torch.Tensor, *, chunk_rows: int = 32768
    ) -> np.ndarray | torch.Tensor:
        """Map (..., B_source) pixels to (..., B_target) float32.

        NumPy input is converted to float32 `chunk_rows` pixels at a time, so a float64 cube is
        never copied whole; the identity returns float32 input itself. A torch tensor gives a
        float32 tensor on its device, in one product.
        """
        if pixels.ndim < 1 or pixels.shape[-1] != self.n_source:
            raise S3FNDataError(
                f"pixels of shape {tuple(pixels.shape)}: expected (..., {self.n_source}), "
                "one value per source band"
            )
        if chunk_rows < 1:
            raise S3FNDataError(f"chunk_rows={chunk_rows}: expected at least 1")
        if isinstance(pixels, torch.Tensor):
            return self._apply_torch(pixels)
        pixels = np.asarray(pixels)
        if self.is_identity:
            return pixels.astype(np.float32, copy=False)
        rows = pixels.reshape(-1, self.n_source)
        out = np.empty((len(rows), self.n_target), dtype=np.float32)
        for start in range(0, len(rows), chunk_rows):
            chunk = np.asarray(rows[start : start + chunk_rows], dtype=np.float32)
            if self._index is not None:
                out[start : start + chunk_rows] = chunk[:, self._index]
            else:
                np.matmul(chunk, self._matrix32, out=out[start : start + chunk_rows])
        return out.reshape(*pixels.shape[:-1], self.n_target)

    def _apply_torch(self, pixels: torch.Tensor) -> torch.Tensor:
        pixels = pixels.to(torch.float32)
        if self.is_identity:
            return pixels
        if self._index is not None:
            return pixels[..., torch.from_numpy(self._index).to(pixels.device)]
        return pixels @ torch.from_numpy(self._matrix32).to(pixels.device)


def _selection(matrix: np.ndarray) -> np.ndarray | None:
    """The source band of each target when every column is one-hot (a pure selection), else None."""
    picks = matrix.argmax(axis=0)
    one_hot = np.zeros_like(matrix)
    one_hot[picks, np.arange(matrix.shape[1])] = 1.0
    return picks if np.array_equal(matrix, one_hot) else None


def _srf_weights(
    source: np.ndarray, source_fwhm: np.ndarray, target: np.ndarray, target_fwhm: np.ndarray
) -> np.ndarray:
    """Each target's unit-area Gaussian SRF integrated over each source's peak-1 Gaussian response.

    That integral is sigma_s / sqrt(v) * exp(-d^2 / 2v) with v = sigma_s^2 + sigma_t^2 and d the
    distance of the centres; it is taken in logs so that far bands underflow to 0, not the sum.
    """
    sigma_s = source_fwhm[:, None] / _FWHM_PER_SIGMA
    variance = sigma_s**2 + (target_fwhm[None, :] / _FWHM_PER_SIGMA) ** 2
    distance = source[:, None] - target[None, :]
    log_weight = np.log(sigma_s) - 0.5 * np.log(variance) - distance**2 / (2.0 * variance)
    weight = np.exp(log_weight - log_weight.max(axis=0))
    return weight / weight.sum(axis=0)


def _missing(
    source: np.ndarray,
    source_fwhm: np.ndarray,
    target: np.ndarray,
    target_fwhm: np.ndarray,
    same: np.ndarray,
) -> np.ndarray:
    """Target bands with no source band near their centre or most of their SRF outside.

    Near: a source band's half-maximum interval reaches within one target FWHM of the centre.
    """
    distance = np.abs(source[:, None] - target[None, :])
    near = (distance <= target_fwhm[None, :] + source_fwhm[:, None] / 2).any(axis=0)
    low = float((source - source_fwhm / 2).min())
    high = float((source + source_fwhm / 2).max())
    sigma = target_fwhm / _FWHM_PER_SIGMA
    inside = ndtr((high - target) / sigma) - ndtr((low - target) / sigma)
    return ~same & (~near | (inside < MIN_COVERED_WEIGHT))


def _tolerance(band_tolerance: float | None, target_fwhm: np.ndarray) -> np.ndarray:
    """How far (nm) each target band may lie outside the source's range and still be filled."""
    if band_tolerance is None:
        return np.maximum(EDGE_TOLERANCE_NM, EDGE_TOLERANCE_FWHMS * target_fwhm)
    return np.full_like(target_fwhm, float(band_tolerance))


def _outside(source: np.ndarray, target: np.ndarray) -> np.ndarray:
    """How many nm each target centre lies below the lowest or above the highest source centre
    (0 inside that range)."""
    return np.maximum(source.min() - target, 0.0) + np.maximum(target - source.max(), 0.0)


def _fillable_edges(
    source: np.ndarray, target: np.ndarray, missing: np.ndarray, tolerance: np.ndarray
) -> np.ndarray:
    """Missing target bands outside the source's range by at most their tolerance, where some
    target band is covered to fill them from."""
    outside = _outside(source, target)
    if missing.all():
        return np.zeros_like(missing)
    return missing & (outside > 0) & (outside <= tolerance)


def _fill_edges(
    matrix: np.ndarray,
    source: np.ndarray,
    source_fwhm: np.ndarray,
    target: np.ndarray,
    edges: np.ndarray,
    where: str,
) -> None:
    """Give each edge band the weights (so the value) of the nearest covered target band, and
    warn naming them.

    A flat extension at the trained bands' own resolution: the nearest covered band is already
    the cube's edge seen through the trained SRF, whereas a slope extrapolated from the sensor's
    edge bands, the noisiest it has, would amplify their noise into values no surface shows.
    """
    covered = np.flatnonzero(~edges)
    filled = np.flatnonzero(edges)
    nearest = covered[np.abs(target[covered][None, :] - target[filled][:, None]).argmin(axis=1)]
    matrix[:, filled] = matrix[:, nearest]
    outside = _outside(source, target)
    order = np.argsort(target[filled])
    named = ", ".join(
        f"{_nm(target[band])} nm ({_nm(outside[band])} nm "
        f"{'below' if target[band] < source.min() else 'above'}; filled from "
        f"{_nm(target[fill])} nm)"
        for band, fill in zip(filled[order], nearest[order], strict=True)
    )
    covered_range = ", ".join(_ranges(*_source_runs(source, source_fwhm)))
    warnings.warn(
        BandFillWarning(
            f"{where}: bands cover {covered_range} nm; the classifier's bands at {named} lie "
            "outside them and take the value of the nearest covered band"
        ),
        stacklevel=4,
    )


def _refusal(
    source: np.ndarray,
    source_fwhm: np.ndarray,
    target: np.ndarray,
    missing: np.ndarray,
    where: str,
) -> S3FNDataError:
    """The error naming the source's covered ranges and the target ranges it lacks."""
    order = np.argsort(target)
    ranges = _ranges(target[order], missing[order])
    named = ", ".join(ranges[:_MAX_RANGES_NAMED])
    if len(ranges) > _MAX_RANGES_NAMED:
        named += f" and {len(ranges) - _MAX_RANGES_NAMED} more ranges"
    covered = ", ".join(_ranges(*_source_runs(source, source_fwhm)))
    return S3FNDataError(
        f"{where}: bands cover {covered} nm; the classifier needs bands at {named} nm "
        f"({int(missing.sum())} of {len(target)} bands), which cannot be resampled from them"
    )


def _source_runs(source: np.ndarray, source_fwhm: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sorted source centres and a mask whose True runs are the stretches without a wide gap.

    A gap is wide when neighbouring centres lie more than twice the larger of their FWHMs apart.
    """
    order = np.argsort(source)
    centres, widths = source[order], source_fwhm[order]
    wide = np.diff(centres) > 2.0 * np.maximum(widths[:-1], widths[1:])
    # Insert a False between the two bands of each wide gap, so that each run is a stretch.
    values = np.insert(centres, np.flatnonzero(wide) + 1, np.nan)
    return values, ~np.isnan(values)


def _ranges(values: np.ndarray, mask: np.ndarray) -> list[str]:
    """'a-b' (or 'a' for one band) for each run of consecutive True entries of `mask`."""
    edges = np.diff(np.concatenate(([0], mask.astype(np.int8), [0])))
    starts, stops = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1) - 1
    return [
        _nm(values[a]) if a == b else f"{_nm(values[a])}-{_nm(values[b])}"
        for a, b in zip(starts, stops, strict=True)
    ]


def _nm(value: float) -> str:
    return f"{value:.1f}".removesuffix(".0")


def _wavelengths(values: npt.ArrayLike, where: str, field: str) -> np.ndarray:
    """Check band centres: a non-empty 1-D list of distinct, finite, positive numbers (nm)."""
    try:
        array = np.array(values, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise S3FNDataError(f"{where}: {field} are not numbers ({exc})") from exc
    if array.ndim != 1 or not array.size:
        raise S3FNDataError(
            f"{where}: {field} have shape {array.shape}; expected a non-empty list of band centres"
        )
    bad = np.flatnonzero(~np.isfinite(array) | (array <= 0))
    if bad.size:
        raise S3FNDataError(
            f"{where}: {field}[{bad[0]}] is {array[bad[0]]:g}; "
            "expected finite, positive band centres in nm"
        )
    ordered = np.sort(array)
    repeated = np.flatnonzero(np.diff(ordered) == 0)
    if repeated.size:
        value = ordered[repeated[0]]
        first, second = np.flatnonzero(array == value)[:2]
        raise S3FNDataError(
            f"{where}: {field}[{first}] and [{second}] are both {value:g} nm; "
            "expected distinct band centres"
        )
    return array


def _given_fwhm(
    values: npt.ArrayLike | None, shape: tuple[int, ...], where: str, field: str
) -> np.ndarray | None:
    """Check FWHMs given for the bands (one per band, or one for all): finite and positive."""
    if values is None:
        return None
    try:
        array = np.array(values, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise S3FNDataError(f"{where}: {field} are not numbers ({exc})") from exc
    if array.shape not in {(), shape}:
        raise S3FNDataError(
            f"{where}: {field} have shape {array.shape}; expected {shape}, one per band, or one"
        )
    array = np.broadcast_to(array, shape).copy()
    bad = np.flatnonzero(~np.isfinite(array) | (array <= 0))
    if bad.size:
        raise S3FNDataError(
            f"{where}: {field}[{bad[0]}] is {array[bad[0]]:g}; expected finite, positive nm"
        )
    return array


def _fwhm(given: np.ndarray | None, centres: np.ndarray, where: str, field: str) -> np.ndarray:
    """The given FWHMs, or each band's distance to its nearest neighbour (needs two bands)."""
    if given is not None:
        return given
    if len(centres) < 2:
        raise S3FNDataError(
            f"{where}: {field} hold one band and no FWHM; give its FWHM to resample it"
        )
    order = np.argsort(centres)
    gaps = np.diff(centres[order])
    nearest = np.minimum(np.concatenate(([gaps[0]], gaps)), np.concatenate((gaps, [gaps[-1]])))
    width = np.empty_like(centres)
    width[order] = nearest
    return width
