"""Matching a cube's bands to the bands a classifier was trained on.

Where both sides know their band centres, a cube from another sensor (or with a subset of the
bands) is resampled onto the trained bands by Gaussian spectral response functions; trained
bands just beyond the cube's range are filled from the nearest covered band (with a warning),
others it cannot cover are refused with the missing range. Where either side does not know
them, the band counts must agree.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from s3fn.data.errors import S3FNDataError
from s3fn.data.preprocess import Preprocessor
from s3fn.data.resample import BandResampler

BandMap = Callable[[np.ndarray], np.ndarray]


def band_map(
    preprocessor: Preprocessor,
    n_bands: int,
    wavelengths: np.ndarray | None,
    fwhm: np.ndarray | None,
    where: str,
    *,
    band_tolerance: float | None = None,
) -> BandMap:
    """A function taking (..., `n_bands`) cube pixels to the trained (..., B) bands.

    `band_tolerance`: how many nm a trained band may lie outside the cube's range and still be
    filled (see `BandResampler.between`; None: its default).
    """
    trained = preprocessor.wavelengths
    if wavelengths is None or trained is None:
        if n_bands != preprocessor.n_bands:
            raise S3FNDataError(
                f"{where}: cube has {n_bands} bands; this classifier was trained on "
                f"{preprocessor.n_bands} bands"
                + ("" if trained is None else " (give the cube's wavelengths to resample it)")
            )
        return _same
    resampler = BandResampler.between(
        wavelengths,
        trained,
        source_fwhm=fwhm,
        target_fwhm=preprocessor.fwhm,
        band_tolerance=band_tolerance,
        where=where,
    )
    return _same if resampler.is_identity else resampler.apply


def _same(pixels: np.ndarray) -> np.ndarray:
    return pixels
