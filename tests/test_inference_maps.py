"""Scene maps tile by tile: the same labels as one window per pixel, whatever the tiling."""

from __future__ import annotations

import subprocess

import numpy as np
import pytest
import rasterio
from rasterio.transform import Affine

from s3fn.data import Cube
from s3fn.inference import Classifier
from s3fn.inference.maps import tile_origins
from s3fn.io import open_source
from s3fn.models import NO_POOLS
from tests.map_helpers import random_classifier


def _cube(height: int, width: int, bands: int = 9, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (rng.random((height, width, bands)) + 0.1).astype(np.float32)


def _per_window(classifier: Classifier, cube: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    pixels = np.argwhere(np.ones(cube.shape[:2], dtype=bool))
    labels, probabilities = classifier.predict_pixels(cube, pixels)
    return labels.reshape(cube.shape[:2]), probabilities.reshape(*cube.shape[:2], -1)


def _assert_same(labels, probabilities, reference_labels, reference_probabilities) -> None:
    np.testing.assert_allclose(probabilities, reference_probabilities, rtol=0, atol=1e-4)
    top2 = np.sort(reference_probabilities, axis=2)[..., -2:]
    clear = top2[..., 1] - top2[..., 0] > 1e-4
    assert clear.mean() > 0.5
    np.testing.assert_array_equal(labels[clear], reference_labels[clear])


@pytest.mark.parametrize(
    ("window", "pools", "tile", "shape"),
    [
        (7, NO_POOLS, 5, (23, 17)),  # tiles smaller than the window
        (8, NO_POOLS, 16, (21, 30)),  # even window
        (15, ("avg", None, "avg"), 9, (26, 19)),  # pooled, tile not a multiple of 4
        (16, ("avg", None, "avg"), 256, (20, 22)),  # one tile, scene barely above the window
    ],
)
def test_tiled_dense_map_equals_one_window_per_pixel(window, pools, tile, shape):
    classifier = random_classifier(window, pools=pools)
    cube = _cube(*shape, bands=classifier.n_bands)
    labels, probabilities = classifier.predict_map(cube, return_probabilities=True, tile=tile)
    _assert_same(labels, probabilities, *_per_window(classifier, cube))


def test_tiling_never_changes_a_label():
    classifier = random_classifier(9)
    cube = _cube(40, 33, seed=3)
    whole = classifier.predict_map(cube, tile=1000)
    for tile in (4, 7, 13, 32):
        np.testing.assert_array_equal(classifier.predict_map(cube, tile=tile), whole)


def test_models_without_a_dense_form_fall_back_to_windows_with_the_same_result():
    classifier = random_classifier(7, padding=1)
    cube = _cube(12, 14)
    labels, probabilities = classifier.predict_map(cube, return_probabilities=True, tile=5)
    _assert_same(labels, probabilities, *_per_window(classifier, cube))


def test_the_mask_limits_the_labels():
    classifier = random_classifier(7)
    cube = _cube(15, 16)
    mask = np.zeros((15, 16), dtype=bool)
    mask[3:9, 2:12] = True
    labels, probabilities = classifier.predict_map(cube, mask, return_probabilities=True, tile=6)
    assert (labels[~mask] == -1).all() and (probabilities[~mask] == 0).all()
    np.testing.assert_array_equal(labels[mask], classifier.predict_map(cube)[mask])
    with pytest.raises(ValueError, match=r"mask is \(3, 3\); expected \(15, 16\)"):
        classifier.predict_map(cube, np.ones((3, 3), bool))


def test_tiles_cover_the_scene_once():
    seen = np.zeros((10, 7), int)
    for r, c in tile_origins(10, 7, 3):
        seen[r : r + 3, c : c + 3] += 1
    assert (seen == 1).all()


def test_write_map_keeps_the_inputs_georeferencing(tmp_path):
    classifier = random_classifier(7)
    cube = _cube(20, 24)
    source_path = tmp_path / "scene.tif"
    transform = Affine(30.0, 0.0, 500000.0, 0.0, -30.0, 4100000.0)
    profile = {"driver": "GTiff", "height": 20, "width": 24, "count": 9, "dtype": "float32"}
    with rasterio.open(source_path, "w", crs="EPSG:32611", transform=transform, **profile) as f:
        f.write(np.moveaxis(cube, 2, 0))
    with open_source(source_path) as source:
        written = classifier.write_map(
            source,
            tmp_path / "labels.tif",
            probabilities_path=tmp_path / "probabilities.hdr",
            tile=8,
        )
    expected, probabilities = classifier.predict_map(Cube(cube), return_probabilities=True)
    with rasterio.open(written[0]) as labels:
        assert labels.crs.to_epsg() == 32611 and labels.transform == transform
        np.testing.assert_array_equal(labels.read(1), expected + 1)
    with rasterio.open(tmp_path / "probabilities.img") as stored:
        np.testing.assert_allclose(np.moveaxis(stored.read(), 0, 2), probabilities, atol=1e-6)
    if subprocess.run(["which", "gdalinfo"], capture_output=True).returncode == 0:
        info = subprocess.run(["gdalinfo", str(written[0])], capture_output=True, text=True)
        assert "32611" in info.stdout or "UTM zone 11N" in info.stdout
