"""PRISMA L2D (HDF-EOS5 .he5): the VNIR and SWIR cubes as one reflectance cube in wavelength
order, with the band centres and widths of the file's global attributes and the map grid of
its projection attributes.

The two detectors overlap (VNIR reaches past 1000 nm, SWIR starts near 920 nm). Each keeps its
bands up to the middle of the overlap, so every wavelength comes once, from the detector for
which it lies further from the edge of its range, where the response falls off and the noise
rises; and the merged band centres increase, as the models' band matching expects.
"""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
from rasterio.crs import CRS
from rasterio.errors import CRSError

from s3fn.data.errors import S3FNDataError
from s3fn.io.source import CubeSource, Geotransform

FIELDS = "HDFEOS/SWATHS/PRS_L2D_HCO/Data Fields"
# (cube dataset, suffix of its global attributes)
DETECTORS = (("VNIR_Cube", "Vnir"), ("SWIR_Cube", "Swir"))
DN_RANGE = 65535.0  # reflectance = L2Scale<Det>Min + DN * (Max - Min) / 65535
_CORNERS = (
    "Product_ULcorner_easting",
    "Product_ULcorner_northing",
    "Product_LRcorner_easting",
    "Product_LRcorner_northing",
)


def is_prisma(path: Path) -> bool:
    """True for an HDF5 file laid out as a PRISMA L2D product (whatever its suffix)."""
    try:
        with h5py.File(path, "r") as handle:
            return all(f"{FIELDS}/{name}" in handle for name, _ in DETECTORS)
    except OSError:  # not HDF5: the container reader says why
        return False


class PrismaSource(CubeSource):
    """A PRISMA L2D cube: the chosen bands of each detector's (rows, bands, cols) cube."""

    def __init__(
        self,
        handle: h5py.File,
        parts: list[tuple[h5py.Dataset, np.ndarray]],
        path: Path,
        **meta,
    ) -> None:
        rows, _, cols = parts[0][0].shape
        bands = sum(len(index) for _, index in parts)
        super().__init__(path, (rows, cols, bands), "VNIR_Cube+SWIR_Cube", **meta)
        self._handle = handle
        self._parts = parts

    def _read(self, r0: int, r1: int, c0: int, c1: int) -> np.ndarray:
        blocks = [dataset[r0:r1, :, c0:c1][:, index, :] for dataset, index in self._parts]
        return np.moveaxis(np.concatenate(blocks, axis=1), 1, 2)  # BIL -> H x W x B

    def close(self) -> None:
        """Close the HDF5 file."""
        super().close()
        self._handle.close()


def open_prisma(path: Path) -> CubeSource:
    """The PRISMA L2D file's merged VNIR + SWIR reflectance cube, read by HDF5 chunks."""
    handle = h5py.File(path, "r")
    try:
        detectors = [_detector(path, handle, name, suffix) for name, suffix in DETECTORS]
        (vnir, vnir_centres, _, _), (swir, swir_centres, _, _) = detectors
        for dataset in (vnir, swir):
            if dataset.ndim != 3 or (dataset.shape[0], dataset.shape[2]) != (
                vnir.shape[0],
                vnir.shape[2],
            ):
                raise S3FNDataError(
                    f"{path}: {dataset.name} is {dataset.shape}; expected (rows, bands, cols) "
                    f"with the rows and columns of VNIR_Cube {vnir.shape}"
                )
        cut = _overlap_middle(vnir_centres, swir_centres)
        parts, centres, widths, gains, offsets = [], [], [], [], []
        for (dataset, cw, fwhm, (low, high)), keep in zip(
            detectors, (lambda c: c < cut, lambda c: c >= cut), strict=True
        ):
            index = np.flatnonzero((cw > 0) & keep(cw))
            index = index[np.argsort(cw[index], kind="stable")]
            parts.append((dataset, index))
            centres.append(cw[index])
            widths.append(fwhm[index])
            gains.append(np.full(index.size, (high - low) / DN_RANGE))
            offsets.append(np.full(index.size, low))
        crs, transform = _map_grid(path, handle, vnir.shape[0], vnir.shape[2])
        scaling = (np.concatenate(gains), np.concatenate(offsets))
        return PrismaSource(
            handle,
            parts,
            path,
            wavelengths=np.concatenate(centres),
            fwhm=np.concatenate(widths),
            crs=crs,
            transform=transform,
            scaling=scaling,
            file_format="PRISMA L2D",
        )
    except BaseException:
        handle.close()
        raise


def _detector(
    path: Path, handle: h5py.File, name: str, suffix: str
) -> tuple[h5py.Dataset, np.ndarray, np.ndarray, tuple[float, float]]:
    """One detector's cube, band centres and FWHM (nm, 0 = no band) and scale (Min, Max)."""
    dataset = handle[f"{FIELDS}/{name}"]
    bands = dataset.shape[1] if dataset.ndim == 3 else 0
    centres = _attribute(path, handle, f"List_Cw_{suffix}", bands)
    if not (centres > 0).any():
        raise S3FNDataError(
            f"{path}: global attribute 'List_Cw_{suffix}' lists no band (all 0); "
            f"expected the band centres of {name} in nm"
        )
    widths = _attribute(path, handle, f"List_Fwhm_{suffix}", bands)
    low = float(_attribute(path, handle, f"L2Scale{suffix}Min", 1)[0])
    high = float(_attribute(path, handle, f"L2Scale{suffix}Max", 1)[0])
    return dataset, centres, widths, (low, high)


def _attribute(path: Path, handle: h5py.File, name: str, size: int) -> np.ndarray:
    """The numeric global attribute `name`, `size` values, or an error naming it."""
    if name not in handle.attrs:
        raise S3FNDataError(f"{path}: no global attribute {name!r}; expected it in PRISMA L2D")
    values = np.asarray(handle.attrs[name], dtype=np.float64).ravel()
    if values.size != size:
        raise S3FNDataError(
            f"{path}: global attribute {name!r} has {values.size} values; expected {size}"
        )
    return values


def _overlap_middle(vnir: np.ndarray, swir: np.ndarray) -> float:
    """The wavelength (nm) where VNIR hands over to SWIR: the middle of their overlap, or the
    middle of the gap between them where they do not overlap."""
    return (vnir[vnir > 0].max() + swir[swir > 0].min()) / 2.0


def _map_grid(
    path: Path, handle: h5py.File, rows: int, cols: int
) -> tuple[str | None, Geotransform | None]:
    """The CRS (WKT) of `Epsg_Code` and the geotransform of the product's corner coordinates,
    which are the centres of its upper-left and lower-right pixels; None where the file
    lacks them."""
    names = ("Epsg_Code", *_CORNERS)
    if any(name not in handle.attrs for name in names):
        return None, None
    code, west, north, east, south = (float(_attribute(path, handle, n, 1)[0]) for n in names)
    try:
        crs = CRS.from_epsg(int(code)).to_wkt()
    except CRSError as exc:
        raise S3FNDataError(f"{path}: Epsg_Code {int(code)} is not a known CRS ({exc})") from exc
    width = (east - west) / max(cols - 1, 1)
    height = (north - south) / max(rows - 1, 1)
    return crs, (west - width / 2, width, 0.0, north + height / 2, 0.0, -height)
