"""`Classifier.predict_xarray`: a `(band, y, x)` DataArray mapped as `predict_map` maps the cube,
eagerly in memory and lazily on Dask (threads and a process cluster), on the scene's grid."""

from __future__ import annotations

import subprocess
import sys
import warnings

import dask
import numpy as np
import pytest
import rasterio
import rioxarray
import torch
import xarray as xr
from distributed import Client, LocalCluster
from rasterio.transform import from_origin

from s3fn.data import BandFillWarning, Cube, S3FNDataError, SceneDataset, split_scene
from s3fn.inference import Classifier
from s3fn.io import open_source
from s3fn.train import TrainSettings, train_classifier
from tests.map_helpers import random_classifier

BANDS = 10
WAVELENGTHS = np.linspace(450.0, 900.0, BANDS)
HEIGHT, WIDTH = 34, 29
WINDOW = 8  # even: the halo is 4 pixels before a pixel and 3 after it
CHUNKS = {"y": (9, 14, 11), "x": (5, 13, 11)}  # 3 x 3 uneven chunks, each at least the halo
CRS = "EPSG:32633"


def _scene_cube(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A HEIGHT x WIDTH x BANDS cube of three classes in blocks, and its label map (1..3)."""
    rows, cols = np.mgrid[0:HEIGHT, 0:WIDTH]
    labels = 1 + (rows // 9 + cols // 8) % 3
    spectra = np.stack(
        [
            np.linspace(0.2, 0.7, BANDS),
            np.linspace(0.7, 0.2, BANDS),
            0.5 + 0.1 * np.cos(np.arange(BANDS)),
        ]
    )
    noise = 0.05 * np.random.default_rng(seed).standard_normal((HEIGHT, WIDTH, BANDS))
    return (spectra[labels - 1] + noise).astype(np.float32), labels


@pytest.fixture(scope="module")
def classifier() -> Classifier:
    """A tiny S3FN trained in a second or two on a scene with band centres (no pooling, dense)."""
    cube, labels = _scene_cube()
    scene = SceneDataset(Cube(cube, WAVELENGTHS), labels, ["soil", "leaf", "roof"])
    split = split_scene(labels, scene.class_names, WINDOW, train=0.6, val=0.2, block_size=6)
    settings = TrainSettings(
        window=WINDOW,
        channels=[2, 3, 3],
        n_components=7,
        epochs=2,
        semantic_epochs=2,
        batch_size=32,
        compare_linear=False,
        refit=False,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # few labels, short training: not what is under test
        return train_classifier(scene, split, settings=settings, class_embeddings=torch.eye(3))


@pytest.fixture(scope="module")
def cube() -> np.ndarray:
    return _scene_cube(seed=1)[0]


@pytest.fixture(scope="module")
def expected(classifier, cube) -> tuple[np.ndarray, np.ndarray]:
    """predict_map's labels (H x W) and probabilities, as K x H x W."""
    labels, probabilities = classifier.predict_map(cube, return_probabilities=True)
    assert len(np.unique(labels)) > 1  # a map worth comparing
    return labels, np.moveaxis(probabilities, 2, 0)


def _data_array(cube: np.ndarray, *, wavelengths: np.ndarray | None = None) -> xr.DataArray:
    coords = {
        "y": 5000.0 - 30.0 * np.arange(cube.shape[0]),
        "x": 300.0 + 30.0 * np.arange(cube.shape[1]),
    }
    if wavelengths is not None:
        coords["wavelength"] = ("band", wavelengths)
    return xr.DataArray(np.moveaxis(cube, 2, 0), dims=("band", "y", "x"), coords=coords)


def _refuse(*args, **kwargs):
    raise AssertionError("computed before .compute()")


def _assert_probabilities(result: xr.DataArray, probabilities: np.ndarray) -> None:
    """Equal to float rounding, NaN where the expected ones are (no data)."""
    np.testing.assert_allclose(result.values, probabilities, rtol=0, atol=1e-5)


def test_in_memory_scene_equals_predict_map_on_its_grid(classifier, cube, expected):
    scene = _data_array(cube).assign_coords(time=np.datetime64("2024-06-01"), band=np.arange(BANDS))
    labels = classifier.predict_xarray(scene.transpose("y", "band", "x"))
    probabilities = classifier.predict_xarray(scene, probabilities=True)
    np.testing.assert_array_equal(labels.values, expected[0])
    np.testing.assert_array_equal(probabilities.values, expected[1])
    assert labels.dims == ("y", "x") and labels.dtype == np.int64 and labels.name == "labels"
    assert probabilities.dims == ("class", "y", "x") and probabilities.dtype == np.float32
    assert list(probabilities["class"].values) == classifier.class_names
    for result in (labels, probabilities):
        assert result.attrs["class_names"] == classifier.class_names
        xr.testing.assert_equal(result["y"], scene["y"])
        xr.testing.assert_equal(result["x"], scene["x"])
        assert result["time"].values == scene["time"].values and "band" not in result.coords
    assert labels.attrs["_FillValue"] == -1


def test_dask_scene_is_lazy_one_task_per_chunk_and_equals_predict_map(classifier, cube, expected):
    scene = _data_array(cube).chunk({"band": 4, **CHUNKS})  # the band axis comes in 3 chunks
    with dask.config.set(scheduler=_refuse):
        labels = classifier.predict_xarray(scene)
        probabilities = classifier.predict_xarray(scene, probabilities=True)
    for result in (labels, probabilities):
        assert result.chunks[-2:] == (CHUNKS["y"], CHUNKS["x"])
        final = result.data.__dask_graph__().layers[result.data.name]
        assert len(final) == 9  # one task per chunk
    np.testing.assert_array_equal(labels.compute(), expected[0])  # every pixel, border too
    _assert_probabilities(probabilities.compute(), expected[1])


def test_chunks_thinner_than_the_halo_are_merged(classifier, cube, expected):
    scene = _data_array(cube).chunk({"y": (2, 3, 25, 4), "x": (20, 6, 3)})
    labels = classifier.predict_xarray(scene)
    assert min(labels.chunks[0]) >= WINDOW // 2 and min(labels.chunks[1]) >= WINDOW // 2
    np.testing.assert_array_equal(labels.compute(), expected[0])


@pytest.mark.parametrize(("window", "pools"), [(7, (None, None, None)), (16, ("avg", None, "avg"))])
def test_pooled_and_odd_windows_match_across_chunks(window, pools):
    """Dense passes with a stride of 4 (pooling) or none, chunks at offsets of any stride."""
    small = random_classifier(window, pools=pools)
    rng = np.random.default_rng(window)
    components = small.preprocessor.n_components
    cube = (rng.random((27, 23, components + 2)) + 0.1).astype(np.float32)
    labels, probabilities = small.predict_map(cube, return_probabilities=True)
    scene = _data_array(cube).chunk({"y": (9, 9, 9), "x": (10, 13)})
    result = small.predict_xarray(scene, probabilities=True).compute(scheduler="sync")
    _assert_probabilities(result, np.moveaxis(probabilities, 2, 0))
    np.testing.assert_array_equal(small.predict_xarray(scene).compute(), labels)


def test_a_process_cluster_gets_the_classifier_once_and_the_same_map(classifier, cube, expected):
    """Worker processes unpickle the classifier and the band map (here a band reordering)."""
    order = np.random.default_rng(1).permutation(BANDS)
    scene = _data_array(cube[..., order], wavelengths=WAVELENGTHS[order]).chunk(CHUNKS)
    labels = classifier.predict_xarray(scene)
    probabilities = classifier.predict_xarray(scene, probabilities=True)
    keys = [k for k in labels.data.__dask_graph__() if str(k).startswith("s3fn-classifier-")]
    assert len(keys) == 1
    with (
        LocalCluster(
            n_workers=2,
            processes=True,
            threads_per_worker=1,
            dashboard_address=None,
            silence_logs=40,
        ) as cluster,
        Client(cluster) as client,
    ):
        got_labels, got_probabilities = client.compute([labels, probabilities], sync=True)
        assert len(client.run(lambda: 0)) == 2
    np.testing.assert_array_equal(got_labels, expected[0])
    _assert_probabilities(got_probabilities, expected[1])


def test_the_crs_and_transform_survive(classifier, cube):
    scene = _data_array(cube).rio.write_crs(CRS).rio.write_transform(from_origin(285, 5015, 30, 30))
    for data in (scene, scene.chunk(CHUNKS)):
        for probabilities in (False, True):
            result = classifier.predict_xarray(data, probabilities=probabilities)
            assert result.rio.crs == scene.rio.crs
            assert result.rio.transform() == scene.rio.transform()
            assert "spatial_ref" in result.coords


@pytest.mark.parametrize("first_scale", [1e-4, 2e-4], ids=["one-scale", "per-band-scales"])
def test_a_geotiff_opened_by_rioxarray_maps_as_its_file(classifier, cube, tmp_path, first_scale):
    """Stored integers with scales and a no-data value, read lazily: the map of the file."""
    scales = np.array([first_scale] + [1e-4] * (BANDS - 1))
    stored = np.round(np.moveaxis(cube, 2, 0) / scales[:, None, None]).astype(np.int16)
    stored[:, 5, 7] = -9999
    stored[:, 20, 0] = -9999
    path = tmp_path / "scene.tif"
    profile = {"driver": "GTiff", "count": BANDS, "height": HEIGHT, "width": WIDTH}
    transform = from_origin(300, 5000, 30, 30)
    with rasterio.open(
        path, "w", **profile, dtype="int16", nodata=-9999, crs=CRS, transform=transform
    ) as out:
        out.write(stored)
        out.scales = scales.tolist()
    with open_source(path) as source:
        expected = classifier.predict_map(source)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # rioxarray: "Scales differ across bands"
        scene = rioxarray.open_rasterio(path, chunks={"y": 12, "x": 10})
    assert ("scales" in scene.attrs) == (first_scale != 1e-4)
    labels = classifier.predict_xarray(scene)
    np.testing.assert_array_equal(labels.compute().values, expected)
    assert labels.values[5, 7] == labels.values[20, 0] == -1
    labels.rio.to_raster(tmp_path / "labels.tif")
    with rasterio.open(tmp_path / "labels.tif") as written:
        assert written.crs == rasterio.crs.CRS.from_string(CRS) and written.nodata == -1
        assert written.transform == transform
        np.testing.assert_array_equal(written.read(1), expected)


def test_wavelengths_in_another_order_or_unit_are_matched(classifier, cube, expected):
    order = np.random.default_rng(0).permutation(BANDS)
    shuffled = _data_array(cube[..., order], wavelengths=WAVELENGTHS[order])
    np.testing.assert_array_equal(classifier.predict_xarray(shuffled).values, expected[0])
    lazy = shuffled.chunk(CHUNKS)
    _assert_probabilities(
        classifier.predict_xarray(lazy, probabilities=True).compute(), expected[1]
    )
    in_um = shuffled.assign_coords(wavelength=("band", WAVELENGTHS[order] / 1000))
    in_um["wavelength"].attrs["units"] = "micrometers"
    np.testing.assert_array_equal(classifier.predict_xarray(in_um).values, expected[0])


def test_bands_are_checked_now_and_warned_about_once(classifier, cube):
    with pytest.raises(S3FNDataError, match=r"predict_xarray: cube has 9 bands; .* trained on 10"):
        classifier.predict_xarray(_data_array(cube[..., 1:]).chunk(CHUNKS))
    with pytest.raises(S3FNDataError, match="predict_xarray: bands cover"):
        classifier.predict_xarray(_data_array(cube[..., 3:], wavelengths=WAVELENGTHS[3:]))
    shifted = _data_array(cube, wavelengths=WAVELENGTHS + 30).chunk(CHUNKS)  # from 480 nm
    with pytest.warns(BandFillWarning, match="predict_xarray: bands cover 480-930 nm"):
        labels = classifier.predict_xarray(shifted, band_tolerance=40)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the tasks warn no more
        assert labels.compute().shape == (HEIGHT, WIDTH)
    with pytest.raises(S3FNDataError, match="predict_xarray: bands cover 480-930 nm"):
        classifier.predict_xarray(shifted, band_tolerance=5)
    classifier.band_tolerance = 5  # the classifier's own tolerance where the call gives none
    try:
        with pytest.raises(S3FNDataError, match="predict_xarray: bands cover 480-930 nm"):
            classifier.predict_xarray(shifted)
    finally:
        classifier.band_tolerance = None


def test_bad_dims_and_inputs_get_one_line_errors(classifier, cube):
    scene = _data_array(cube)
    with pytest.raises(
        S3FNDataError,
        match=r"dims \('band', 'row', 'col'\); expected 'band', 'y' and 'x' \(in any order\)",
    ):
        classifier.predict_xarray(scene.rename(y="row", x="col"))
    with pytest.raises(S3FNDataError, match=r"dims \('y', 'x'\)"):
        classifier.predict_xarray(scene.isel(band=0))
    with pytest.raises(TypeError, match=r"expected an xarray\.DataArray"):
        classifier.predict_xarray(cube)
    with pytest.raises(S3FNDataError, match=r"coordinate 'wavelength' has dims \('y',\)"):
        classifier.predict_xarray(scene.assign_coords(wavelength=("y", np.arange(HEIGHT))))
    with pytest.raises(S3FNDataError, match="too small to reflect-pad"):
        classifier.predict_xarray(scene.isel(y=slice(0, 3)))


def test_no_data_pixels_are_marked_as_predict_map_marks_them(classifier, cube):
    holed = cube.copy()
    holed[0, 0] = np.nan  # a corner, every band
    holed[9, 5, 2] = np.nan  # one band only, at a chunk corner: no data too
    labels, probabilities = classifier.predict_map(holed, return_probabilities=True)
    assert labels[0, 0] == labels[9, 5] == -1
    for data in (_data_array(holed), _data_array(holed).chunk(CHUNKS)):
        got = classifier.predict_xarray(data, probabilities=True).compute()
        _assert_probabilities(got, np.moveaxis(probabilities, 2, 0))
        assert np.isnan(got.values[:, 9, 5]).all()
        np.testing.assert_array_equal(classifier.predict_xarray(data).compute(), labels)


def test_importing_s3fn_imports_no_xarray_or_dask():
    code = (
        "import sys, s3fn, s3fn.inference; "
        "print([m for m in ('xarray', 'dask', 'rioxarray') if m in sys.modules])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
