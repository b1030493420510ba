"""Satellite products in their own layouts: PRISMA L2D (.he5, VNIR + SWIR merged, scaled,
georeferenced)."""

from __future__ import annotations

import shutil
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
