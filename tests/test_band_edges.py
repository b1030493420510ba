"""A bundle trained on one sensor maps a cube whose range falls just short of its bands: the
edge bands are filled from the nearest covered band with a warning, through the Python API and
the `s3fn` command; bands further out, or in an interior gap, are still refused."""

from __future__ import annotations

import re
import warnings

import numpy as np
import pytest

from s3fn.data import (
    BandFillWarning,
    BandResampler,
    Cube,
    Preprocessor,
    S3FNDataError,
    SceneDataset,
)
from s3fn.inference import Classifier
from s3fn.models import SpectralMeanMLP
from tests.cli_helpers import s3fn

CLASSES = ["soil", "grass", "water"]
SENSOR = np.linspace(400.0, 1000.0, 60)  # the airborne sensor the bundle was trained on
SENSOR_FWHM = np.full(60, 11.0)
SHORTER = np.arange(415.0, 986.0, 10.0)  # a spaceborne sensor: 415-985 nm, 10 nm bands
FILLED = re.escape(
    "bands cover 415-985 nm; the classifier's bands at 400 nm (15 nm below; filled from "
    "410.2 nm), 1000 nm (15 nm above; filled from 989.8 nm) lie outside them"
)
REFUSED = (
    "bands cover 415-985 nm; the classifier needs bands at 400, 1000 nm (2 of 60 bands), "
    "which cannot be resampled from them"
)


def _scene(wavelengths: np.ndarray, seed: int = 0) -> np.ndarray:
    """A 12 x 12 cube of smooth spectra (two broad Gaussians per pixel) at `wavelengths`."""
    rng = np.random.default_rng(seed)
    centres, widths = rng.uniform(400, 1000, (144, 2)), rng.uniform(80, 200, (144, 2))
    shape = np.exp(-0.5 * ((wavelengths[None, None] - centres[..., None]) / widths[..., None]) ** 2)
    return (0.1 + shape.sum(axis=1)).reshape(12, 12, -1).astype(np.float32)


@pytest.fixture(scope="module")
def classifier() -> Classifier:
    """An untrained spectral-mean model behind a preprocessor fitted on the 60 sensor bands."""
    pixels = _scene(SENSOR, seed=1).reshape(-1, 60)
    preprocessor = Preprocessor.fit(pixels, n_components=3, wavelengths=SENSOR, fwhm=SENSOR_FWHM)
    return Classifier(SpectralMeanMLP(3, 3), preprocessor, CLASSES, window=4, kind="scene")


def _as_trained(cube: np.ndarray) -> np.ndarray:
    """The 415-985 nm cube in the 60 trained bands as documented: the 58 covered bands
    resampled, the 400 and 1000 nm bands copies of their covered neighbours."""
    inner = BandResampler.between(SHORTER, SENSOR[1:-1], target_fwhm=SENSOR_FWHM[1:-1]).apply(cube)
    return np.concatenate([inner[..., :1], inner, inner[..., -1:]], axis=-1)


def test_a_cube_just_short_of_the_trained_range_is_mapped_with_a_warning(classifier):
    cube = _scene(SHORTER)
    with pytest.warns(BandFillWarning, match=f"^predict_map: cube: {FILLED}"):
        labels, probabilities = classifier.predict_map(
            Cube(cube, SHORTER), return_probabilities=True
        )
    expected_labels, expected = classifier.predict_map(
        Cube(_as_trained(cube), SENSOR, SENSOR_FWHM), return_probabilities=True
    )
    np.testing.assert_allclose(probabilities, expected, rtol=0, atol=1e-5)
    sure = np.diff(np.sort(expected, axis=2)[..., -2:], axis=2)[..., 0] > 1e-4
    np.testing.assert_array_equal(labels[sure], expected_labels[sure])
    pixels = np.array([[3, 4], [7, 1]])
    with pytest.warns(BandFillWarning, match=f"^predict_pixels: {FILLED}"):
        _, chosen = classifier.predict_pixels(Cube(cube, SHORTER), pixels)
    np.testing.assert_allclose(chosen, expected[pixels[:, 0], pixels[:, 1]], rtol=0, atol=1e-5)


def test_a_cube_ending_far_short_is_refused_as_before(classifier):
    short = np.arange(400.0, 701.0, 10.0)
    message = (
        "predict_map: cube: bands cover 400-700 nm; the classifier needs bands at 705.1-1000 nm "
        "(30 of 60 bands), which cannot be resampled from them"
    )
    with pytest.raises(S3FNDataError, match=f"^{re.escape(message)}$"), warnings.catch_warnings():
        warnings.simplefilter("error", BandFillWarning)
        classifier.predict_map(Cube(_scene(short), short))


def test_an_interior_gap_is_refused_whatever_the_tolerance(classifier):
    gapped = SENSOR[(SENSOR < 600) | (SENSOR > 700)]
    with pytest.raises(S3FNDataError, match=r"needs bands at 613.6-684.7 nm \(8 of 60 bands\)"):
        Classifier(
            classifier.model, classifier.preprocessor, CLASSES, window=4, band_tolerance=500.0
        ).predict_image(Cube(_scene(gapped), gapped))


def test_a_tolerance_of_zero_refuses_the_shorter_cube_on_every_path(classifier):
    strict = Classifier(classifier.model, classifier.preprocessor, CLASSES, window=4, kind="scene")
    strict.band_tolerance = 0.0
    cube = Cube(_scene(SHORTER), SHORTER)
    with pytest.raises(S3FNDataError, match=f"^predict_map: cube: {re.escape(REFUSED)}$"):
        strict.predict_map(cube)
    with pytest.raises(S3FNDataError, match=f"^predict_image: {re.escape(REFUSED)}$"):
        strict.predict_image(cube)
    scene = SceneDataset(cube, np.ones((12, 12), dtype=np.int64), CLASSES)
    with pytest.raises(S3FNDataError, match=f"^predict_pixels: {re.escape(REFUSED)}$"):
        strict.evaluate(scene)


def test_the_command_fills_by_default_and_refuses_with_band_tolerance_0(classifier, tmp_path):
    bundle = classifier.save(tmp_path / "bundle")
    cube = tmp_path / "spaceborne.npz"
    np.savez(cube, cube=_scene(SHORTER), wavelengths=SHORTER)
    out = tmp_path / "maps"
    result = s3fn("predict", str(bundle), str(cube), "--map", "--out", str(out), "--quiet")
    assert result.returncode == 0, result.stderr
    [warning] = result.stderr.strip().splitlines()
    assert re.match(f"s3fn: warning: predict_map: {re.escape(str(cube))}: {FILLED}", warning)
    assert (out / "spaceborne_labels.tif").is_file()
    strict = tmp_path / "strict"
    result = s3fn("predict", str(bundle), str(cube), "--band-tolerance", "0", "--out", str(strict),
                  "--quiet")  # fmt: skip
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [f"s3fn: error: predict_image: {REFUSED}"]
    assert not (strict / "predictions.csv").exists()
    bad = s3fn("predict", str(bundle), str(cube), "--band-tolerance", "-3")
    assert bad.returncode == 2
    assert "--band-tolerance: '-3'; expected a number of nm >= 0" in bad.stderr
