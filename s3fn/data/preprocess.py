"""Per-band z-score followed by PCA: fitted once on training pixels, applied everywhere after.

The fitted transform is plain numbers (`to_dict` / `from_dict` for JSON, `to_hdf5` / `from_hdf5`),
so it travels with a model and gives validation, test and inference data the training transform.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import h5py
import numpy as np
import torch

from s3fn.data.covariance import RunningCovariance
from s3fn.data.cube import Cube
from s3fn.data.errors import S3FNDataError
from s3fn.data.nodata import nodata_pixels

FORMAT = "s3fn.preprocessor"
VERSION = 1
_ARRAYS = ("mean", "scale", "components", "explained_variance")


class Preprocessor:
    """z = (x - mean) / scale per band, then y = components @ z: B bands in, C components out;
    a no-data pixel (any band NaN) gives y = 0, as the training mean spectrum would.

    Build it with `Preprocessor.fit`; `transform_pixels`, `transform_cube` and `transform_windows`
    apply it to (..., B) pixels, HxWxB cubes and NxBxhxw windows (NumPy or torch).
    """

    def __init__(
        self,
        mean: np.ndarray,
        scale: np.ndarray,
        components: np.ndarray,
        explained_variance: np.ndarray,
        total_variance: float,
        wavelengths: np.ndarray | None = None,
        fwhm: np.ndarray | None = None,
        *,
        source: str = "Preprocessor",
    ) -> None:
        self.mean = np.asarray(mean, dtype=np.float64)
        self.scale = np.asarray(scale, dtype=np.float64)
        self.components = np.asarray(components, dtype=np.float64)
        self.explained_variance = np.asarray(explained_variance, dtype=np.float64)
        self.total_variance = float(total_variance)
        self.wavelengths = None if wavelengths is None else np.asarray(wavelengths, np.float64)
        self.fwhm = None if fwhm is None or wavelengths is None else np.asarray(fwhm, np.float64)
        _check_shapes(self, source)
        weights = (self.components / self.scale).T  # B x C: y = x @ weights + bias
        self._weights32 = weights.astype(np.float32)
        self._bias32 = (-self.mean @ weights).astype(np.float32)

    @classmethod
    def fit(
        cls,
        pixels: np.ndarray | Iterable[np.ndarray],
        *,
        n_components: int | None = None,
        variance: float = 0.999,
        components_range: tuple[int, int] | None = None,
        wavelengths: np.ndarray | None = None,
        fwhm: np.ndarray | None = None,
        chunk_rows: int = 16384,
    ) -> Preprocessor:
        """Fit on training pixels: an (..., B) array or an iterable of such arrays (streamed).

        Keeps `n_components` components when given, else the fewest whose explained variance
        reaches the fraction `variance` of the total, clipped to `components_range` (fewest,
        most) when given: noisy bands would otherwise each keep a component of their own.
        Bands that are constant get scale 1. Pixels with a NaN band (no data) are left out.
        """
        if n_components is None and not 0.0 < variance <= 1.0:
            raise S3FNDataError(f"variance={variance!r}: expected a fraction in (0, 1]")
        stats: RunningCovariance | None = None
        chunks = [pixels] if isinstance(pixels, np.ndarray) else pixels
        for chunk in chunks:
            chunk = np.asarray(chunk)
            if stats is None:
                stats = RunningCovariance(chunk.shape[-1], chunk_rows)
            if np.isnan(chunk).any():  # no-data pixels say nothing of the training data
                chunk = chunk[~nodata_pixels(chunk)]
            stats.update(chunk)
        if stats is None:
            raise S3FNDataError("no pixels were given; expected at least one training pixel")
        mean, cov = stats.mean, stats.covariance
        std = np.sqrt(np.clip(np.diag(cov), 0.0, None))
        scale = np.where(std > 1e-12 * max(float(std.max()), 1e-300), std, 1.0)
        corr = cov / np.outer(scale, scale)
        eigenvalues, eigenvectors = np.linalg.eigh(corr)
        order = np.argsort(eigenvalues)[::-1]
        eigenvalues = np.clip(eigenvalues[order], 0.0, None)
        eigenvectors = eigenvectors[:, order].T
        total = float(eigenvalues.sum())
        k = _n_kept(eigenvalues, total, n_components, variance)
        if n_components is None and components_range is not None:
            k = int(np.clip(k, *components_range))
        components = eigenvectors[:k]
        signs = np.sign(components[np.arange(k), np.abs(components).argmax(axis=1)])
        components = components * signs[:, None]
        return cls(mean, scale, components, eigenvalues[:k], total, wavelengths, fwhm)

    @property
    def n_bands(self) -> int:
        """Number of input bands B."""
        return self.mean.shape[0]

    @property
    def n_components(self) -> int:
        """Number of output components C."""
        return self.components.shape[0]

    @property
    def explained_variance_ratio(self) -> np.ndarray:
        """Fraction of the total (standardised) variance each kept component explains."""
        return self.explained_variance / self.total_variance

    def float32_affine(self) -> tuple[np.ndarray, np.ndarray]:
        """(B x C weights, C bias) in float32: `transform_pixels` computes pixels @ weights +
        bias with exactly these numbers (an exported graph applies them too)."""
        return self._weights32.copy(), self._bias32.copy()

    def transform_pixels(self, pixels: np.ndarray, *, chunk_rows: int = 32768) -> np.ndarray:
        """Map (..., B) pixels to (..., C) float32, in chunks of `chunk_rows` pixels.

        Computed as one float32 matmul and bias per chunk: pixels @ (components / scale).T + bias.
        No-data pixels (any band NaN) map to 0: the training mean, exactly.
        """
        pixels = np.asarray(pixels)
        self._check_bands(pixels.shape[-1], "pixels")
        rows = pixels.reshape(-1, self.n_bands)
        out = np.empty((len(rows), self.n_components), dtype=np.float32)
        for start in range(0, len(rows), chunk_rows):
            chunk = np.asarray(rows[start : start + chunk_rows], dtype=np.float32)
            target = out[start : start + chunk_rows]
            np.matmul(chunk, self._weights32, out=target)
            target += self._bias32
            _fill_nodata(target)
        return out.reshape(*pixels.shape[:-1], self.n_components)

    def transform_cube(self, cube: Cube | np.ndarray) -> np.ndarray:
        """Map an HxWxB cube (or `Cube`) to an HxWxC float32 cube.

        A `Cube` whose wavelengths differ (by more than 1 nm) from those fitted on is refused.
        """
        data = cube.data if isinstance(cube, Cube) else np.asarray(cube)
        if isinstance(cube, Cube) and cube.wavelengths is not None:
            self._check_wavelengths(cube.wavelengths)
        if data.ndim != 3:
            raise S3FNDataError(f"cube of shape {data.shape}: expected HxWxB")
        return self.transform_pixels(data)

    def transform_windows(self, windows: np.ndarray | torch.Tensor) -> np.ndarray | torch.Tensor:
        """Map NxBxhxw windows to NxCxhxw float32, as NumPy or as torch (on the input's device)."""
        if windows.ndim != 4:
            raise S3FNDataError(f"windows of shape {tuple(windows.shape)}: expected NxBxhxw")
        self._check_bands(windows.shape[1], "windows")
        if isinstance(windows, torch.Tensor):
            bias = torch.from_numpy(self._bias32).to(windows.device)
            weights = torch.from_numpy(self._weights32).to(windows.device)
            pixels = windows.to(torch.float32).permute(0, 2, 3, 1)
            out = torch.add(pixels @ weights, bias)
            out = out.masked_fill(torch.isnan(out), 0.0)  # no data: the training mean
            return out.permute(0, 3, 1, 2).contiguous()
        pixels = self.transform_pixels(np.moveaxis(np.asarray(windows), 1, -1))
        return np.ascontiguousarray(np.moveaxis(pixels, -1, 1))

    def to_dict(self) -> dict[str, Any]:
        """Plain lists and floats (JSON-ready) that `from_dict` turns back into this transform."""
        out: dict[str, Any] = {"format": FORMAT, "version": VERSION}
        out.update({name: getattr(self, name).tolist() for name in _ARRAYS})
        out["total_variance"] = self.total_variance
        out["wavelengths"] = None if self.wavelengths is None else self.wavelengths.tolist()
        out["fwhm"] = None if self.fwhm is None else self.fwhm.tolist()
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, source: str = "preprocessor") -> Preprocessor:
        """Rebuild from `to_dict` output; `source` names where it came from in error messages."""
        if data.get("format") != FORMAT or data.get("version") != VERSION:
            raise S3FNDataError(
                f"{source}: format/version is {data.get('format')!r}/{data.get('version')!r}; "
                f"expected {FORMAT!r}/{VERSION}"
            )
        missing = [f for f in (*_ARRAYS, "total_variance") if f not in data]
        if missing:
            raise S3FNDataError(f"{source}: field {missing[0]!r} is missing")
        arrays = {name: _float_array(data[name], source, name) for name in _ARRAYS}
        bands = {
            name: None if data.get(name) is None else _float_array(data[name], source, name)
            for name in ("wavelengths", "fwhm")
        }
        total = _float_array(data["total_variance"], source, "total_variance")
        return cls(**arrays, total_variance=float(total), **bands, source=source)

    def to_hdf5(self, group: h5py.Group) -> None:
        """Write into an HDF5 group: a float64 dataset per array, the rest as attributes."""
        group.attrs["format"] = FORMAT
        group.attrs["version"] = VERSION
        group.attrs["total_variance"] = self.total_variance
        for name in _ARRAYS:
            group.create_dataset(name, data=getattr(self, name))
        for name in ("wavelengths", "fwhm"):
            if getattr(self, name) is not None:
                group.create_dataset(name, data=getattr(self, name))

    @classmethod
    def from_hdf5(cls, group: h5py.Group) -> Preprocessor:
        """Read what `to_hdf5` wrote."""
        fields: dict[str, Any] = {k: _text(v) for k, v in group.attrs.items()}
        fields.update(
            {name: group[name][()] for name in (*_ARRAYS, "wavelengths", "fwhm") if name in group}
        )
        return cls.from_dict(fields, source=f"{group.file.filename}:{group.name}")

    def _check_wavelengths(self, wavelengths: np.ndarray) -> None:
        if self.wavelengths is None or wavelengths.shape != self.wavelengths.shape:
            return
        far = np.abs(wavelengths - self.wavelengths) > 1.0
        if far.any():
            band = int(np.argmax(far))
            raise S3FNDataError(
                f"cube band {band} is at {wavelengths[band]:g} nm; this preprocessor was fitted "
                f"on {self.wavelengths[band]:g} nm there (another sensor or band subset?)"
            )

    def _check_bands(self, bands: int, what: str) -> None:
        if bands != self.n_bands:
            raise S3FNDataError(
                f"{what} have {bands} bands; this preprocessor was fitted on {self.n_bands}"
            )


def _fill_nodata(target: np.ndarray) -> None:
    """Set to 0 (the training mean) the rows of transformed pixels that a NaN band made NaN."""
    nan = np.isnan(target)
    if nan.any():
        target[nan.any(axis=1)] = 0.0


def _n_kept(
    eigenvalues: np.ndarray, total: float, n_components: int | None, variance: float
) -> int:
    n_bands = len(eigenvalues)
    if n_components is not None:
        if not 1 <= n_components <= n_bands:
            raise S3FNDataError(f"n_components={n_components}: expected 1..{n_bands} (the bands)")
        return n_components
    if total <= 0.0:
        return 1
    cumulative = np.cumsum(eigenvalues) / total
    return int(min(np.searchsorted(cumulative, variance * (1 - 1e-12)) + 1, n_bands))


def _float_array(value: Any, source: str, field: str) -> np.ndarray:
    try:
        array = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise S3FNDataError(f"{source}: field {field!r} is not numeric ({exc})") from exc
    if not np.isfinite(array).all():
        raise S3FNDataError(f"{source}: field {field!r} has NaN or Inf; expected finite numbers")
    return array


def _check_shapes(p: Preprocessor, source: str) -> None:
    bands = p.mean.shape
    if p.mean.ndim != 1 or p.scale.shape != bands or (p.scale <= 0).any():
        raise S3FNDataError(
            f"{source}: mean {p.mean.shape} and scale {p.scale.shape}: expected two (B,) vectors, "
            "scale > 0"
        )
    if p.components.ndim != 2 or p.components.shape[1:] != bands or not p.components.shape[0]:
        raise S3FNDataError(
            f"{source}: field 'components' has shape {p.components.shape}; expected (C, {bands[0]})"
        )
    if p.explained_variance.shape != p.components.shape[:1]:
        raise S3FNDataError(
            f"{source}: field 'explained_variance' has shape {p.explained_variance.shape}; "
            f"expected ({p.components.shape[0]},)"
        )
    for name in ("wavelengths", "fwhm"):
        values = getattr(p, name)
        if values is not None and values.shape != bands:
            raise S3FNDataError(
                f"{source}: field {name!r} has shape {values.shape}; expected {bands}"
            )


def _text(value: Any) -> Any:
    return value.decode() if isinstance(value, bytes) else value
