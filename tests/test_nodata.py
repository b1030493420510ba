"""No-data pixels as each format declares them: no class in maps, the training mean in the
windows that reach them, left out of training, and nothing changed for clean cubes."""

from __future__ import annotations

import h5py
import numpy as np
import pytest
import rasterio
import torch
from spectral import envi

from s3fn.cli import main
from s3fn.data import (
    Cube,
    Preprocessor,
    S3FNDataError,
    SceneDataset,
    iter_scene_windows,
    split_scene,
)
from s3fn.data.cube import as_cube_array
from s3fn.data.nodata import NoDataWarning, nodata_pixels
from s3fn.data.windows import WindowCutter
from s3fn.inference import Classifier
from s3fn.io import open_source, read_cube
from s3fn.models import NO_POOLS, S3FN, SpectralSpatialCNN
from s3fn.train import TrainSettings, train_classifier

CLASSES = ["a", "b", "c"]
SMALL = {"channels": (3, 4, 4), "feature_dim": 12, "hidden_dim": 8}
BANDS = 12
BLOCK = (slice(20, 30), slice(15, 25))  # the 10 x 10 no-data block of a 48 x 48 scene
FILL = -9999.0


def _classifier(window: int = 7, pools=NO_POOLS) -> Classifier:
    """A random S3FN on 12 bands and 7 components (16 and 14 where pooled: the pools need 14)."""
    torch.manual_seed(window)
    rng = np.random.default_rng(window)
    components, bands = (14, 16) if pools[0] else (7, BANDS)
    preprocessor = Preprocessor.fit(rng.random((300, bands)) + 0.1, n_components=components)
    cnn = SpectralSpatialCNN(
        components, 3, window=window, pools=pools, spectral_branch=True, **SMALL
    )
    model = S3FN(cnn, torch.randn(3, 5), temperature="learnable", init_scale=5.0)
    return Classifier(model, preprocessor, CLASSES, window=window, kind="scene")


def _scene(seed: int = 0, bands: int = BANDS) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (rng.random((48, 48, bands)) + 0.1).astype(np.float32)


def _clear_of_block(window: int) -> np.ndarray:
    """48 x 48 booleans: pixels whose window stays clear of the block."""
    half = window // 2
    clear = np.ones((48, 48), bool)
    rows, cols = BLOCK
    clear[rows.start - half : rows.stop + half, cols.start - half : cols.stop + half] = False
    return clear


def _in_block() -> np.ndarray:
    inside = np.zeros((48, 48), bool)
    inside[BLOCK] = True
    return inside


def _write_geotiff(path, cube: np.ndarray, nodata: float) -> None:
    profile = {"driver": "GTiff", "height": 48, "width": 48, "count": BANDS, "dtype": "float32"}
    with rasterio.open(path, "w", nodata=nodata, **profile) as dataset:
        dataset.write(np.moveaxis(cube, 2, 0))


def test_geotiff_nodata_block_gets_no_class_and_leaves_other_labels_alone(tmp_path):
    classifier = _classifier()
    clean = _scene()
    filled = clean.copy()
    filled[BLOCK] = FILL
    _write_geotiff(tmp_path / "scene.tif", filled, FILL)
    with open_source(tmp_path / "scene.tif") as source:
        written = classifier.write_map(
            source, tmp_path / "labels.tif", probabilities_path=tmp_path / "probs.tif", tile=16
        )
        labels, probabilities = classifier.predict_map(source, return_probabilities=True)
        as_read = source.read(slice(None), slice(None))
    with rasterio.open(written[0]) as stored:
        file_labels = stored.read(1)
    with rasterio.open(written[1]) as stored:
        file_probabilities = np.moveaxis(stored.read(), 0, 2)
    inside, clear = _in_block(), _clear_of_block(7)
    assert (file_labels[inside] == 0).all() and (file_labels[~inside] > 0).all()
    np.testing.assert_array_equal(file_labels, labels + 1)
    assert np.isnan(file_probabilities[inside]).all()
    assert not np.isnan(file_probabilities[~inside]).any()
    assert (labels[inside] == -1).all() and np.isnan(probabilities[inside]).all()
    # pixels a window away from the block: exactly the labels and probabilities of the clean scene
    reference, reference_probabilities = classifier.predict_map(clean, return_probabilities=True)
    np.testing.assert_array_equal(labels[clear], reference[clear])
    np.testing.assert_array_equal(probabilities[clear], reference_probabilities[clear])
    halo = ~inside & ~clear  # windows reaching the block see the fill
    assert (probabilities[halo] != reference_probabilities[halo]).all(axis=1).any()
    # the array as read (NaN at the block) maps the same
    np.testing.assert_array_equal(classifier.predict_map(as_read), labels)


@pytest.mark.parametrize(("window", "pools"), [(7, NO_POOLS), (15, ("avg", None, "avg"))])
def test_dense_and_per_window_paths_agree_around_no_data(window, pools):
    classifier = _classifier(window, pools)
    cube = _scene(seed=1, bands=classifier.n_bands)
    cube[BLOCK] = np.nan
    labels, probabilities = classifier.predict_map(cube, return_probabilities=True, tile=13)
    pixels = np.argwhere(np.ones((48, 48), bool))
    by_window, window_probabilities = classifier.predict_pixels(cube, pixels)
    by_window = by_window.reshape(48, 48)
    window_probabilities = window_probabilities.reshape(48, 48, -1)
    inside = _in_block()
    assert (by_window[inside] == -1).all() and np.isnan(window_probabilities[inside]).all()
    np.testing.assert_allclose(probabilities, window_probabilities, rtol=0, atol=1e-4)
    top2 = np.sort(window_probabilities[~inside], axis=1)[:, -2:]
    clear = top2[:, 1] - top2[:, 0] > 1e-4
    np.testing.assert_array_equal(labels[~inside][clear], by_window[~inside][clear])


def test_windows_reaching_no_data_see_the_training_mean():
    classifier = _classifier()
    cube = _scene()
    cube[BLOCK] = np.nan
    cube[5, 5, 3] = np.nan  # one NaN band makes the pixel no data
    transformed = classifier.preprocessor.transform_cube(cube)
    nodata = nodata_pixels(cube)
    assert nodata[5, 5] and nodata.sum() == 101
    np.testing.assert_array_equal(transformed[nodata], 0.0)
    clean = classifier.preprocessor.transform_cube(_scene())
    np.testing.assert_array_equal(transformed[~nodata], clean[~nodata])
    windows = classifier.preprocessor.transform_windows(
        torch.from_numpy(np.moveaxis(cube, 2, 0)[None])
    )
    planes = windows[0].numpy()
    np.testing.assert_array_equal(planes[:, nodata], 0.0)  # the torch path fills alike
    np.testing.assert_allclose(planes, np.moveaxis(transformed, 2, 0), rtol=0, atol=1e-5)


def test_clean_cube_outputs_are_those_of_the_plain_transform_and_windows():
    """A cube without no data: the transform is the bare float32 matmul + bias, and the map the
    network's output on windows cut from it, bit for bit (as before no-data handling)."""
    classifier = _classifier()
    cube = _scene(seed=2)
    pre = classifier.preprocessor
    plain = (cube.reshape(-1, BANDS) @ pre._weights32 + pre._bias32).reshape(48, 48, -1)
    np.testing.assert_array_equal(pre.transform_cube(cube), plain)
    pixels = np.argwhere(np.ones((48, 48), bool))[::37]
    windows = WindowCutter(plain, classifier.window).at_centres(pixels)
    with torch.no_grad():
        logits = classifier.model(torch.from_numpy(windows)[:, None])
    _, probabilities = classifier.predict_pixels(cube, pixels)
    np.testing.assert_array_equal(probabilities, torch.softmax(logits, dim=1).numpy())
    rng = np.random.default_rng(3)
    pixels_fit = rng.random((500, BANDS))
    with_nodata = np.concatenate([pixels_fit, np.full((40, BANDS), np.nan)])
    fitted, ignoring = Preprocessor.fit(pixels_fit), Preprocessor.fit(with_nodata)
    for name in ("mean", "scale", "components"):
        np.testing.assert_array_equal(getattr(fitted, name), getattr(ignoring, name))


def test_npy_nan_block_maps_through_the_command_and_the_api(tmp_path):
    classifier = _classifier()
    classifier.save(tmp_path / "bundle")
    cube = _scene()
    cube[BLOCK] = np.nan
    np.save(tmp_path / "scene.npy", cube)
    out = tmp_path / "maps"
    args = ["predict", str(tmp_path / "bundle"), str(tmp_path / "scene.npy"), "--map"]
    assert main([*args, "--probabilities", "--out", str(out), "--quiet"]) == 0
    with rasterio.open(out / "scene_labels.tif") as stored:
        file_labels = stored.read(1)
    with rasterio.open(out / "scene_probabilities.tif") as stored:
        file_probabilities = np.moveaxis(stored.read(), 0, 2)
    expected = Classifier.load(tmp_path / "bundle").predict_map(np.load(tmp_path / "scene.npy"))
    inside, clear = _in_block(), _clear_of_block(7)
    assert (expected[inside] == -1).all() and (file_labels[inside] == 0).all()
    np.testing.assert_array_equal(file_labels, expected + 1)
    assert np.isnan(file_probabilities[inside]).all()
    np.testing.assert_array_equal(expected[clear], classifier.predict_map(_scene())[clear])


def test_envi_data_ignore_value_marks_whole_pixels(tmp_path):
    data = (_scene()[:6, :5, :4] * 1000).astype(np.int16)
    data[1, 2, 0] = data[4, 4] = -9999
    envi.save_image(
        str(tmp_path / "scene.hdr"), data, metadata={"data ignore value": -9999}, force=True
    )
    read = read_cube(tmp_path / "scene.hdr").data
    expected = np.zeros((6, 5), bool)
    expected[1, 2] = expected[4, 4] = True
    np.testing.assert_array_equal(nodata_pixels(read), expected)
    assert np.isnan(read[expected]).all()
    np.testing.assert_array_equal(read[~expected], data[~expected])


def test_hdf5_fill_value_marks_whole_pixels(tmp_path):
    data = _scene()[:6, :5, :4]
    data[0, 3, 2] = data[5, 0] = FILL
    with h5py.File(tmp_path / "scene.h5", "w") as handle:
        handle.create_dataset("cube", data=data).attrs["_FillValue"] = np.float32(FILL)
    expected = np.zeros((6, 5), bool)
    expected[0, 3] = expected[5, 0] = True
    with open_source(tmp_path / "scene.h5") as source:
        np.testing.assert_array_equal(
            nodata_pixels(source.read(slice(0, 6), slice(0, 5))), expected
        )
        np.testing.assert_array_equal(source.read(slice(5, 6), slice(0, 2), nodata=0.0)[0, 0], 0.0)


def test_training_leaves_out_labels_on_no_data_and_warns_with_their_count():
    rng = np.random.default_rng(0)
    labels = np.zeros((32, 32), dtype=np.int64)
    labels[:, :16], labels[:, 16:] = 1, 2
    cube = np.where(labels[..., None] == 1, 0.2, 0.8) * np.linspace(0.8, 1.2, 6)
    cube = (cube + 0.02 * rng.standard_normal(cube.shape)).astype(np.float32)
    cube[10:16, 4:10] = np.nan  # 36 labelled pixels of class 1
    with pytest.warns(NoDataWarning, match=r"scene: 36 labelled pixels lie on no-data pixels"):
        scene = SceneDataset(Cube(cube), labels, ["left", "right"])
    assert (scene.labels[10:16, 4:10] == 0).all() and (scene.labels > 0).sum() == 1024 - 36
    split = split_scene(scene.labels, scene.class_names, 8, train=0.5, val=0.25, block_size=8)
    trained = np.concatenate([split.train, split.val])
    assert not np.isnan(cube[trained[:, 0], trained[:, 1]]).any()
    settings = TrainSettings(
        stage="cnn", window=8, padding=1, channels=[2, 2, 2], n_components=4, epochs=2,
        batch_size=16, compare_linear=False,
    )  # fmt: skip
    classifier = train_classifier(scene, split, settings=settings)
    assert classifier.info["labels"]["given"] == (split.labels > 0).sum() - len(split.test)
    assert np.isfinite(classifier.preprocessor.mean).all()
    near = np.array([[13, 12]])  # its 8 x 8 window reaches the block
    batch = next(iter_scene_windows(scene, near, classifier.preprocessor, size=8))
    assert np.isfinite(batch.windows).all()
    np.testing.assert_array_equal(batch.windows[0][:, 1:7, :2], 0.0)  # rows 10:16, cols 8:10
    assert (classifier.predict_map(scene.cube)[10:16, 4:10] == -1).all()
    scored = np.array([[12, 6], [12, 20], [3, 3]])  # the first on no data, not scored
    result = classifier.evaluate(scene, scored)
    assert result.windows.total == 2 and len(result.probabilities) == 2


def test_an_in_memory_cube_with_one_nan_band_is_no_data_in_every_band():
    cube = _scene()[:6, :6]
    cube[2, 3, 4] = np.nan
    checked = as_cube_array(cube, "test", "cube")
    assert np.isnan(checked[2, 3]).all() and np.isnan(checked).sum() == BANDS
    assert np.isnan(cube).sum() == 1  # the caller's array is left as it was
    cube[0, 0, 0] = np.inf
    with pytest.raises(S3FNDataError, match=r"test: cube has 1 Inf values \(first at row 0"):
        as_cube_array(cube, "test", "cube")
