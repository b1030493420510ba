"""Band resampling against spectra convolved with Gaussian SRFs by numerical integration."""

from __future__ import annotations

import math
import re

import numpy as np
import pytest
import torch
from scipy.integrate import quad

from s3fn.data.errors import S3FNDataError
from s3fn.data.resample import BandFillWarning, BandResampler

FWHM_PER_SIGMA = 2.0 * math.sqrt(2.0 * math.log(2.0))


def _spectrum(seed):
    """A smooth, strictly positive reflectance-like spectrum: offset + slope + broad Gaussians."""
    rng = np.random.default_rng(seed)
    centres = rng.uniform(450.0, 950.0, 3)
    widths = rng.uniform(40.0, 80.0, 3)
    heights = rng.uniform(0.2, 0.6, 3)
    slope = rng.uniform(-3e-4, 3e-4)

    def spectrum(nm):
        nm = np.asarray(nm, dtype=np.float64)
        bumps = heights * np.exp(-((nm[..., None] - centres) ** 2) / (2.0 * widths**2))
        return 0.3 + slope * (nm - 400.0) + bumps.sum(axis=-1)

    return spectrum


def _band_values(spectrum, centres, fwhm):
    """Each band's value: the spectrum integrated against a unit-area Gaussian SRF (scipy quad)."""
    values = []
    for centre in centres:
        sigma = fwhm / FWHM_PER_SIGMA

        def integrand(nm, centre=centre, sigma=sigma):
            srf = math.exp(-((nm - centre) ** 2) / (2.0 * sigma**2)) / (
                sigma * math.sqrt(2 * math.pi)
            )
            return float(spectrum(nm)) * srf

        value, _ = quad(integrand, centre - 10 * sigma, centre + 10 * sigma, epsabs=1e-13)
        values.append(value)
    return np.array(values)


def _pixels(shape, seed, dtype=np.float32):
    return np.random.default_rng(seed).uniform(0.05, 1.0, shape).astype(dtype)


def test_identical_bands_give_the_exact_identity():
    rng = np.random.default_rng(0)
    source = np.sort(rng.choice(np.arange(400.0, 2500.0, 5.0), 150, replace=False))
    target = source + rng.uniform(-0.9, 0.9, source.shape)
    resampler = BandResampler.between(source, target, source_fwhm=10.0)
    assert resampler.is_identity
    np.testing.assert_array_equal(resampler.matrix, np.eye(150))
    pixels = _pixels((4, 5, 150), seed=1)
    assert resampler.apply(pixels) is pixels
    wide = pixels.astype(np.float64)
    np.testing.assert_array_equal(resampler.apply(wide), pixels)
    assert torch.equal(resampler.apply(torch.from_numpy(wide)), torch.from_numpy(pixels))


def test_reordered_bands_are_selected_exactly():
    source = np.arange(400.0, 1000.0, 10.0)
    resampler = BandResampler.between(source[::-1], source)
    assert not resampler.is_identity
    pixels = _pixels((6, 60), seed=2)
    np.testing.assert_array_equal(resampler.apply(pixels), pixels[:, ::-1])
    np.testing.assert_array_equal(
        resampler.apply(torch.from_numpy(pixels)).numpy(), pixels[:, ::-1]
    )


@pytest.mark.parametrize(
    ("source_fwhm", "tolerance"),
    # Unknown FWHM: 1 nm (the spacing) widens the 10 nm kernel by 0.5 %; 0.1 nm: point samples.
    [(None, 1e-4), (0.1, 2e-6)],
)
def test_fine_bands_resample_to_the_spectrum_convolved_with_the_target_srf(source_fwhm, tolerance):
    spectrum = _spectrum(seed=3)
    source = np.arange(400.0, 1001.0, 1.0)
    target = np.arange(420.0, 981.0, 10.0) + 0.37
    resampler = BandResampler.between(source, target, source_fwhm=source_fwhm, target_fwhm=10.0)
    expected = _band_values(spectrum, target, fwhm=10.0)
    np.testing.assert_allclose(resampler.apply(spectrum(source)), expected, rtol=0, atol=tolerance)


@pytest.mark.parametrize("fwhm", [6.0, None], ids=["known-fwhm", "unknown-fwhm"])
def test_every_second_band_recovers_the_full_sensor(fwhm):
    spectrum = _spectrum(seed=4)
    sensor = np.arange(400.0, 1001.0, 5.0)
    full = _band_values(spectrum, sensor, fwhm=6.0)
    resampler = BandResampler.between(sensor[::2], sensor, source_fwhm=fwhm, target_fwhm=fwhm)
    recovered = resampler.apply(full[::2])
    # Neighbouring bands differ by up to 0.065; the end bands, resampled one-sided, err most.
    np.testing.assert_allclose(recovered[1:-1], full[1:-1], rtol=0, atol=1e-2)
    np.testing.assert_allclose(recovered, full, rtol=0, atol=1.5e-2)
    if fwhm is not None:  # a band the source has, with the same SRF, is taken as it is
        np.testing.assert_allclose(recovered[::2], full[::2], rtol=1e-6)


def test_weights_are_non_negative_and_each_target_sums_to_one():
    rng = np.random.default_rng(5)
    source = rng.permutation(np.cumsum(rng.uniform(2.0, 12.0, 200)) + 400.0)
    target = np.sort(rng.uniform(source.min() + 20, source.max() - 20, 70))
    resampler = BandResampler.between(
        source, target, source_fwhm=rng.uniform(3.0, 15.0, 200), target_fwhm=12.0
    )
    assert resampler.matrix.shape == (200, 70)
    assert resampler.matrix.dtype == np.float64
    assert (resampler.matrix >= 0).all()
    np.testing.assert_allclose(resampler.matrix.sum(axis=0), 1.0, rtol=0, atol=1e-12)


def test_unsorted_source_bands_keep_their_order_in_the_matrix():
    rng = np.random.default_rng(6)
    source = np.arange(400.0, 1000.0, 4.0)
    target = np.arange(410.0, 990.0, 9.0)
    order = rng.permutation(len(source))
    ordered = BandResampler.between(source, target)
    shuffled = BandResampler.between(source[order], target)
    np.testing.assert_allclose(shuffled.matrix, ordered.matrix[order], rtol=1e-14, atol=0)


def test_uncovered_target_bands_are_refused_with_the_missing_range():
    vnir = np.arange(400.0, 1001.0, 5.0)
    full = np.linspace(400.0, 2500.0, 211)
    message = (
        "scene.hdr: bands cover 400-1000 nm; the classifier needs bands at 1010-2500 nm "
        "(150 of 211 bands), which cannot be resampled from them"
    )
    with pytest.raises(S3FNDataError, match=f"^{re.escape(message)}$"):
        BandResampler.between(vnir, full, where="scene.hdr")
    no_water = np.arange(400.0, 2501.0, 10.0)
    no_water = no_water[(no_water < 1350) | (no_water > 1450)]
    with pytest.raises(S3FNDataError, match=re.escape("cover 400-1340, 1460-2500 nm")) as error:
        BandResampler.between(no_water, np.arange(400.0, 2501.0, 10.0) + 3.0)
    assert "needs bands at 1363-1443 nm (9 of 211 bands)" in str(error.value)


@pytest.mark.parametrize(
    ("source", "kwargs", "message"),
    [
        ([500.0, np.nan, 700.0], {}, r"cube\.hdr: wavelengths\[1\] is nan; expected finite"),
        ([500.0, np.inf, 700.0], {}, r"wavelengths\[1\] is inf; expected finite"),
        ([0.0, 600.0, 700.0], {}, r"wavelengths\[0\] is 0; expected finite, positive"),
        ([-5.0, 600.0, 700.0], {}, r"wavelengths\[0\] is -5; expected finite, positive"),
        ([700.0, 500.0, 700.0], {}, r"wavelengths\[0\] and \[2\] are both 700 nm"),
        ([[500.0, 600.0]], {}, r"wavelengths have shape \(1, 2\); expected a non-empty list"),
        ([], {}, r"wavelengths have shape \(0,\)"),
        (["red", "green"], {}, r"wavelengths are not numbers"),
        ([500.0, 600.0, 700.0], {"source_fwhm": [5.0, 5.0]}, r"fwhm have shape \(2,\)"),
        ([500.0, 600.0, 700.0], {"source_fwhm": [5.0, 0.0, 5.0]}, r"fwhm\[1\] is 0"),
        ([600.0], {}, r"wavelengths hold one band and no FWHM"),
    ],
)
def test_bad_wavelengths_are_refused(source, kwargs, message):
    with pytest.raises(S3FNDataError, match=message):
        BandResampler.between(source, [550.0, 600.0, 650.0], where="cube.hdr", **kwargs)


def test_bad_target_wavelengths_are_refused():
    with pytest.raises(S3FNDataError, match=r"target wavelengths\[2\] is nan"):
        BandResampler.between([500.0, 600.0], [500.0, 550.0, np.nan])
    with pytest.raises(S3FNDataError, match=r"target fwhm\[0\] is -1"):
        BandResampler.between([500.0, 600.0], [550.0], target_fwhm=[-1.0])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_chunked_apply_equals_unchunked(dtype):
    resampler = BandResampler.between(np.arange(400.0, 1000.0, 6.0), np.arange(410.0, 990.0, 13.0))
    cube = _pixels((37, 23, 100), seed=7, dtype=dtype)
    whole = resampler.apply(cube, chunk_rows=1 << 20)
    assert whole.dtype == np.float32
    assert whole.shape == (37, 23, resampler.n_target)
    reference = cube.astype(np.float64) @ resampler.matrix
    np.testing.assert_allclose(whole, reference, rtol=1e-6, atol=1e-7)
    for chunk_rows in (1, 7, 500):
        chunked = resampler.apply(cube, chunk_rows=chunk_rows)
        np.testing.assert_allclose(chunked, whole, rtol=1e-6, atol=1e-7)
    tensor = resampler.apply(torch.from_numpy(cube))
    np.testing.assert_allclose(tensor.numpy(), reference, rtol=1e-6, atol=1e-7)


def test_apply_refuses_the_wrong_band_count():
    resampler = BandResampler.between(np.arange(400.0, 1000.0, 6.0), np.arange(410.0, 990.0, 13.0))
    with pytest.raises(S3FNDataError, match=r"expected \(\.\.\., 100\), one value per source band"):
        resampler.apply(_pixels((5, 99), seed=8))


SENSOR = np.linspace(400.0, 1000.0, 60)  # an airborne sensor: 60 bands, 11 nm wide
SHORTER = np.arange(415.0, 986.0, 10.0)  # a spaceborne one: 415-985 nm, 10 nm wide


def test_edge_bands_within_the_tolerance_take_the_nearest_covered_band():
    message = (
        "scene.tif: bands cover 415-985 nm; the classifier's bands at 400 nm (15 nm below; "
        "filled from 410.2 nm), 1000 nm (15 nm above; filled from 989.8 nm) lie outside them "
        "and take the value of the nearest covered band"
    )
    with pytest.warns(BandFillWarning, match=f"^{re.escape(message)}$"):
        resampler = BandResampler.between(
            SHORTER, SENSOR, source_fwhm=10.0, target_fwhm=11.0, where="scene.tif"
        )
    inner = BandResampler.between(SHORTER, SENSOR[1:-1], source_fwhm=10.0, target_fwhm=11.0)
    np.testing.assert_array_equal(resampler.matrix[:, 1:-1], inner.matrix)
    np.testing.assert_array_equal(resampler.matrix[:, 0], resampler.matrix[:, 1])
    np.testing.assert_array_equal(resampler.matrix[:, -1], resampler.matrix[:, -2])
    out = resampler.apply(_pixels((40, len(SHORTER)), seed=3))
    np.testing.assert_array_equal(out[:, 0], out[:, 1])
    np.testing.assert_array_equal(out[:, -1], out[:, -2])


@pytest.mark.parametrize(
    ("target_fwhm", "filled", "refused"),
    [(5.0, 19.0, 21.0), (15.0, 29.0, 31.0)],  # 20 nm, or two FWHMs where that is more
)
def test_the_default_tolerance_is_20_nm_or_two_band_widths(target_fwhm, filled, refused):
    source = np.arange(500.0, 701.0, 5.0)
    inside = np.arange(510.0, 691.0, 10.0)
    with pytest.warns(BandFillWarning, match=f"at {700 + filled:g} nm \\({filled:g} nm above"):
        BandResampler.between(source, [*inside, 700 + filled], target_fwhm=target_fwhm)
    with pytest.raises(S3FNDataError, match=f"needs bands at {700 + refused:g} nm \\(1 of"):
        BandResampler.between(source, [*inside, 700 + refused], target_fwhm=target_fwhm)


def test_a_set_tolerance_replaces_the_default_and_zero_fills_nothing():
    message = (
        "scene.tif: bands cover 415-985 nm; the classifier needs bands at 400, 1000 nm "
        "(2 of 60 bands), which cannot be resampled from them"
    )
    for tolerance in (0.0, 14.9):
        with pytest.raises(S3FNDataError, match=f"^{re.escape(message)}$"):
            BandResampler.between(
                SHORTER, SENSOR, target_fwhm=11.0, band_tolerance=tolerance, where="scene.tif"
            )
    with pytest.warns(BandFillWarning, match="1000 nm \\(15 nm above"):
        BandResampler.between(SHORTER, SENSOR, target_fwhm=11.0, band_tolerance=15.0)
    for bad in (-1.0, np.nan):
        with pytest.raises(ValueError, match=f"band_tolerance={bad}; expected a finite"):
            BandResampler.between(SHORTER, SHORTER, band_tolerance=bad)


def test_interior_gaps_and_far_edges_are_never_filled():
    no_water = np.arange(400.0, 2501.0, 10.0)
    no_water = no_water[(no_water < 1350) | (no_water > 1450)]
    with pytest.raises(S3FNDataError, match=r"needs bands at 1363-1443 nm \(9 of 211 bands\), "):
        BandResampler.between(no_water, np.arange(400.0, 2501.0, 10.0) + 3.0, band_tolerance=1e3)
    # 1010-2500 nm lack bands: the 1010 nm band alone is within the tolerance, so all are refused
    with pytest.raises(S3FNDataError, match=r"needs bands at 1010-2500 nm \(150 of 211 bands\)"):
        BandResampler.between(np.arange(400.0, 1001.0, 5.0), np.linspace(400.0, 2500.0, 211))
