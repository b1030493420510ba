"""Satellite products in their own layouts: PRISMA L2D (.he5, VNIR + SWIR merged, scaled,
georeferenced) and EMIT L2A swaths mapped onto the grid of their geometry lookup table."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
import rasterio
import torch
from rasterio.crs import CRS

from s3fn.cli import main
from s3fn.data import Preprocessor, S3FNDataError
from s3fn.inference import Classifier
from s3fn.io import open_source, read_cube
from s3fn.models import NO_POOLS, S3FN, SpectralSpatialCNN
from tests.test_distributed import free_port

CLASSES = ["a", "b", "c"]
SMALL = {"channels": (3, 4, 4), "feature_dim": 12, "hidden_dim": 8}

# PRISMA lists band centres longest first; 0 marks a band that is not there.
VNIR_CW = [1010.0, 990.0, 970.0, 950.0, 700.0, 600.0, 0.0, 450.0]
SWIR_CW = [2400.0, 2000.0, 1600.0, 1200.0, 1000.0, 980.0, 940.0, 920.0]
# The overlap is 920-1010 nm: VNIR keeps its bands below 965 nm, SWIR those from there on.
VNIR_KEPT, SWIR_KEPT = [7, 5, 4, 3], [5, 4, 3, 2, 1, 0]
MERGED_CW = [450.0, 600.0, 700.0, 950.0, 980.0, 1000.0, 1200.0, 1600.0, 2000.0, 2400.0]
SCALES = {"Vnir": (0.0, 1.2), "Swir": (-0.01, 1.0)}
PRISMA_TRANSFORM = (500000.0, 30.0, 0.0, 4600000.0, 0.0, -30.0)

EMIT_WKT = CRS.from_epsg(4326).to_wkt()
EMIT_TRANSFORM = (-117.5, 0.000542232520, 0.0, 36.2, 0.0, -0.000542232520)
EMIT_BANDS = 9


def _classifier(bands: int, window: int = 7) -> Classifier:
    """A random S3FN on `bands` bands and 7 components."""
    torch.manual_seed(bands)
    rng = np.random.default_rng(bands)
    preprocessor = Preprocessor.fit(rng.random((300, bands)) + 0.1, n_components=7)
    cnn = SpectralSpatialCNN(7, 3, window=window, pools=NO_POOLS, spectral_branch=True, **SMALL)
    model = S3FN(cnn, torch.randn(3, 5), temperature="learnable", init_scale=5.0)
    return Classifier(model, preprocessor, CLASSES, window=window, kind="scene")


def _fwhm(centres: list[float]) -> np.ndarray:
    return np.array([0.0 if c == 0 else 5.0 + c / 100 for c in centres])


def prisma_he5(path: Path, rows: int = 20, cols: int = 20) -> tuple[np.ndarray, np.ndarray]:
    """A PRISMA L2D file: VNIR_Cube / SWIR_Cube uint16 (rows, bands, cols), an error matrix
    beside each, latitude / longitude, and the global band, scale and projection attributes.
    Returns the two DN cubes."""
    rng = np.random.default_rng(1)
    vnir = rng.integers(500, 60000, (rows, 8, cols), dtype=np.uint16)
    swir = rng.integers(500, 60000, (rows, 8, cols), dtype=np.uint16)
    swath = "HDFEOS/SWATHS/PRS_L2D_HCO"
    with h5py.File(path, "w") as handle:
        fields = handle.create_group(f"{swath}/Data Fields")
        for name, cube in (("VNIR", vnir), ("SWIR", swir)):
            fields.create_dataset(f"{name}_Cube", data=cube, chunks=(4, 8, 4))
            fields.create_dataset(f"{name}_PIXEL_L2_ERR_MATRIX", data=np.zeros_like(cube, np.uint8))
        geolocation = handle.create_group(f"{swath}/Geolocation Fields")
        geolocation.create_dataset("Latitude", data=np.full((rows, cols), 41.5, np.float32))
        geolocation.create_dataset("Longitude", data=np.full((rows, cols), 15.0, np.float32))
        attrs = handle.attrs
        for suffix, centres in (("Vnir", VNIR_CW), ("Swir", SWIR_CW)):
            attrs[f"List_Cw_{suffix}"] = np.array(centres, np.float32)
            attrs[f"List_Fwhm_{suffix}"] = _fwhm(centres).astype(np.float32)
            attrs[f"L2Scale{suffix}Min"], attrs[f"L2Scale{suffix}Max"] = SCALES[suffix]
        attrs["Epsg_Code"] = np.int32(32633)
        attrs["Product_ULcorner_easting"], attrs["Product_ULcorner_northing"] = 500015.0, 4599985.0
        attrs["Product_LRcorner_easting"] = 500015.0 + 30 * (cols - 1)
        attrs["Product_LRcorner_northing"] = 4599985.0 - 30 * (rows - 1)
    return vnir, swir


def _prisma_reflectance(vnir: np.ndarray, swir: np.ndarray) -> np.ndarray:
    parts = []
    for cube, kept, (low, high) in (
        (vnir, VNIR_KEPT, SCALES["Vnir"]),
        (swir, SWIR_KEPT, SCALES["Swir"]),
    ):
        parts.append(low + cube[:, kept, :].astype(np.float64) * (high - low) / 65535)
    return np.moveaxis(np.concatenate(parts, axis=1), 1, 2)


def test_prisma_l2d_reads_merged_in_wavelength_order_scaled_and_georeferenced(tmp_path):
    path = tmp_path / "PRS_L2D_STD_20230701101010_20230701101014_0001.he5"
    vnir, swir = prisma_he5(path)
    expected = _prisma_reflectance(vnir, swir)
    with open_source(path) as source:
        assert source.shape == (20, 20, 10)
        np.testing.assert_array_equal(source.wavelengths, MERGED_CW)
        np.testing.assert_allclose(source.fwhm, _fwhm(MERGED_CW))
        assert CRS.from_wkt(source.crs).to_epsg() == 32633
        assert source.transform == PRISMA_TRANSFORM
        window = source.read(slice(3, 9), slice(5, 17))
        whole = source.read(slice(None), slice(None))
    np.testing.assert_array_equal(window, whole[3:9, 5:17])
    np.testing.assert_allclose(whole, expected, rtol=1e-6, atol=1e-7)  # float32
    np.testing.assert_allclose(read_cube(path).data, expected, rtol=1e-6, atol=1e-7)


def test_prisma_is_known_by_its_layout_and_a_key_reads_one_dataset(tmp_path):
    _, swir = prisma_he5(tmp_path / "scene.he5")
    shutil.copy(tmp_path / "scene.he5", tmp_path / "renamed.h5")
    np.testing.assert_array_equal(
        read_cube(tmp_path / "renamed.h5").data, read_cube(tmp_path / "scene.he5").data
    )
    raw = read_cube(tmp_path / "scene.he5", key="HDFEOS/SWATHS/PRS_L2D_HCO/Data Fields/SWIR_Cube")
    np.testing.assert_array_equal(raw.data, swir)  # as stored, as any HDF5 dataset
    with h5py.File(tmp_path / "plain.he5", "w") as handle:  # HDF5 that is not PRISMA
        handle.create_dataset("cube", data=np.ones((6, 5, 4), np.float32))
    assert read_cube(tmp_path / "plain.he5").data.shape == (6, 5, 4)


def test_prisma_without_its_scale_attribute_is_refused_by_name(tmp_path):
    prisma_he5(tmp_path / "scene.he5")
    with h5py.File(tmp_path / "scene.he5", "r+") as handle:
        del handle.attrs["L2ScaleSwirMax"]
    with pytest.raises(
        S3FNDataError, match=r"scene\.he5: no global attribute 'L2ScaleSwirMax'; expected it"
    ):
        open_source(tmp_path / "scene.he5")
    with h5py.File(tmp_path / "scene.he5", "r+") as handle:
        handle.attrs["L2ScaleSwirMax"] = 1.0
        handle.attrs["List_Cw_Vnir"] = np.zeros(8, np.float32)
    with pytest.raises(
        S3FNDataError, match=r"scene\.he5: global attribute 'List_Cw_Vnir' lists no band \(all 0\)"
    ):
        open_source(tmp_path / "scene.he5")


def test_prisma_maps_through_the_command_with_its_map_grid(tmp_path):
    prisma_he5(tmp_path / "scene.he5")
    _classifier(len(MERGED_CW)).save(tmp_path / "bundle")
    out = tmp_path / "maps"
    args = ["predict", str(tmp_path / "bundle"), str(tmp_path / "scene.he5"), "--map"]
    assert main([*args, "--out", str(out), "--quiet"]) == 0
    with rasterio.open(out / "scene_labels.tif") as stored:
        assert stored.crs.to_epsg() == 32633
        assert stored.transform.to_gdal() == PRISMA_TRANSFORM
        labels = stored.read(1).astype(np.int64) - 1
    expected = Classifier.load(tmp_path / "bundle").predict_map(read_cube(tmp_path / "scene.he5"))
    np.testing.assert_array_equal(labels, expected)


def emit_swath(path: Path, swath: tuple[int, int], glt: tuple[np.ndarray, np.ndarray]) -> Path:
    """An EMIT L2A NetCDF-4 file: reflectance downtrack x crosstrack x bands, its band
    parameters, `location/glt_x` / `glt_y` (1-based, 0 = none) and the grid's attributes."""
    rng = np.random.default_rng(2)
    data = (rng.random((*swath, EMIT_BANDS)) * 0.5 + 0.05).astype(np.float32)
    with h5py.File(path, "w") as handle:
        handle.create_dataset("reflectance", data=data).attrs["_FillValue"] = np.float32(-9999)
        params = handle.create_group("sensor_band_parameters")
        params.create_dataset("wavelengths", data=400.0 + 50 * np.arange(EMIT_BANDS))
        params["wavelengths"].attrs["units"] = "nm"
        params.create_dataset("fwhm", data=np.full(EMIT_BANDS, 8.5, np.float32))
        location = handle.create_group("location")
        location.create_dataset("glt_x", data=glt[0].astype(np.int32))
        location.create_dataset("glt_y", data=glt[1].astype(np.int32))
        handle.attrs["geotransform"] = np.array(EMIT_TRANSFORM)
        handle.attrs["spatial_ref"] = EMIT_WKT
    return path


def _glt(swath: tuple[int, int], grid: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """A lookup table that shows random swath pixels, and none along the grid's edges."""
    rng = np.random.default_rng(3)
    glt_x = rng.integers(1, swath[1] + 1, grid)
    glt_y = rng.integers(1, swath[0] + 1, grid)
    for table in (glt_x, glt_y):
        table[0, :] = table[:, -1] = 0
    return glt_x, glt_y


def _on_grid(swath_map: np.ndarray, glt: tuple[np.ndarray, np.ndarray], fill) -> np.ndarray:
    glt_x, glt_y = glt
    expected = swath_map[glt_y - 1, glt_x - 1].astype(np.float64)
    expected[glt_x == 0] = fill
    return expected


def test_emit_map_is_written_on_the_lookup_grid_with_its_crs(tmp_path):
    glt = _glt((12, 10), (14, 16))
    path = emit_swath(tmp_path / "EMIT_L2A_RFL_001_20230316T045133_2307503_005.nc", (12, 10), glt)
    classifier = _classifier(EMIT_BANDS)
    with open_source(path) as source:
        assert source.crs is None and source.lookup is not None
        swath_labels, swath_probabilities = classifier.predict_map(
            source, return_probabilities=True
        )
        written = classifier.write_map(
            source, tmp_path / "labels.tif", probabilities_path=tmp_path / "probabilities.tif"
        )
    assert written == [tmp_path / "labels.tif", tmp_path / "probabilities.tif"]
    with rasterio.open(tmp_path / "labels.tif") as stored:
        assert stored.crs.to_epsg() == 4326 and stored.transform.to_gdal() == EMIT_TRANSFORM
        labels = stored.read(1)
    np.testing.assert_array_equal(labels, _on_grid(swath_labels + 1, glt, 0))
    assert (labels[0] == 0).all() and (labels[:, -1] == 0).all() and labels.min() == 0
    with rasterio.open(tmp_path / "probabilities.tif") as stored:
        assert stored.crs.to_epsg() == 4326 and stored.shape == (14, 16)
        probabilities = np.moveaxis(stored.read(), 0, 2)
    expected = np.stack(
        [_on_grid(swath_probabilities[..., k], glt, np.nan) for k in range(3)], axis=2
    )
    np.testing.assert_allclose(probabilities, expected, rtol=1e-6)


def test_emit_swath_map_through_the_command_on_the_grid_or_on_the_swath(tmp_path):
    glt = _glt((12, 10), (14, 16))
    path = emit_swath(tmp_path / "emit.nc", (12, 10), glt)
    _classifier(EMIT_BANDS).save(tmp_path / "bundle")
    args = ["predict", str(tmp_path / "bundle"), str(path), "--map", "--quiet"]
    assert main([*args, "--out", str(tmp_path / "grid")]) == 0
    assert main([*args, "--swath", "--out", str(tmp_path / "swath")]) == 0
    with rasterio.open(tmp_path / "swath" / "emit_labels.tif") as stored:
        assert stored.crs is None and stored.shape == (12, 10)
        swath_labels = stored.read(1)
    expected = Classifier.load(tmp_path / "bundle").predict_map(read_cube(path))
    np.testing.assert_array_equal(swath_labels, expected + 1)
    with rasterio.open(tmp_path / "grid" / "emit_labels.tif") as stored:
        assert stored.crs.to_epsg() == 4326 and stored.transform.to_gdal() == EMIT_TRANSFORM
        np.testing.assert_array_equal(stored.read(1), _on_grid(swath_labels, glt, 0))


def test_emit_lookup_table_pointing_outside_the_swath_is_refused(tmp_path):
    glt_x, glt_y = _glt((12, 10), (14, 16))
    glt_x[5, 5] = 11
    path = emit_swath(tmp_path / "emit.nc", (12, 10), (glt_x, glt_y))
    with pytest.raises(
        S3FNDataError,
        match=r"emit\.nc: location/glt_x refers to swath index 11; expected 1 to 10 \(0 for none\)",
    ):
        open_source(path)


def test_emit_tiles_shared_by_torchrun_are_written_once_on_the_lookup_grid(tmp_path):
    glt = _glt((12, 10), (14, 16))
    path = emit_swath(tmp_path / "emit.nc", (12, 10), glt)
    classifier = _classifier(EMIT_BANDS)
    classifier.save(tmp_path / "bundle")
    with open_source(path) as source:
        classifier.write_map(source, tmp_path / "one.tif")
    torchrun = Path(sys.executable).with_name("torchrun")
    launch = [str(torchrun), "--nproc-per-node", "2", "--master-port", str(free_port())]
    predict = ["predict", str(tmp_path / "bundle"), str(path), "--map", "--tile", "6"]
    result = subprocess.run(
        [*launch, "-m", "s3fn", *predict, "--out", str(tmp_path / "maps")],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert not list((tmp_path / "maps").glob(".*partial*"))  # scratch arrays removed
    with rasterio.open(tmp_path / "maps" / "emit_labels.tif") as shared:
        assert shared.crs.to_epsg() == 4326 and shared.transform.to_gdal() == EMIT_TRANSFORM
        with rasterio.open(tmp_path / "one.tif") as single:
            np.testing.assert_array_equal(shared.read(1), single.read(1))
