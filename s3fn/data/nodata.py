"""No-data pixels: how they are carried, found, and kept out of training.

A pixel is no data when any of its bands is NaN or equals the no-data value its file declares
for that band (GDAL nodata, ENVI `data ignore value`, HDF5 / NetCDF `_FillValue`). One band
is enough because the network reads whole spectra: a spectrum with a filled band is not a
measurement, and the formats fill whole pixels (swath borders, masked clouds) anyway. Readers
hand such pixels on as NaN in every band; preprocessing puts them at the training mean (0 after
the z-score and PCA), so a window that reaches them sees the average spectrum there, and the
maps give them no class.
"""

from __future__ import annotations

import warnings

import numpy as np


class NoDataWarning(UserWarning):
    """Labels (or object-mask pixels) on no-data pixels were left out of training."""


def nodata_pixels(data: np.ndarray) -> np.ndarray:
    """H x W (or ...) booleans: True where any band of the (..., B) spectra is NaN."""
    return np.isnan(data).any(axis=-1)


def spread_nodata(data: np.ndarray, missing: np.ndarray | None = None) -> np.ndarray:
    """`data` (..., B float32) with every band NaN at pixels where any band is NaN or `missing`
    (..., B booleans) is True; in place where it changes anything."""
    pixels = nodata_pixels(data)
    if missing is not None:
        pixels |= missing.any(axis=-1)
    if pixels.any():
        data[pixels] = np.nan
    return data


def drop_nodata_labels(labels: np.ndarray, nodata: np.ndarray, where: str) -> np.ndarray:
    """`labels` (H x W, 0 = unlabelled) with those on `nodata` pixels set to 0, and a
    `NoDataWarning` counting them; the same array when none are."""
    dropped = (labels > 0) & nodata
    count = int(dropped.sum())
    if not count:
        return labels
    warnings.warn(
        f"{where}: {count} labelled pixels lie on no-data pixels and are left out",
        NoDataWarning,
        stacklevel=3,
    )
    kept = labels.copy()
    kept[dropped] = 0
    return kept
