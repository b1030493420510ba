"""Map writers: GeoTIFF and ENVI label / probability maps written tile by tile, read back by
gdalinfo, rasterio, spectral and open_source, and what happens on bad input or a failed run."""

from __future__ import annotations

import tracemalloc
import warnings

import numpy as np
import pytest
import rasterio
import spectral.io.envi as envi

from s3fn.data import S3FNDataError, read_labels
from s3fn.io import open_map_writer, open_source
from s3fn.io.map_writer import class_palette
from tests.test_data_sources import UTM_TRANSFORM, epsg, gdalinfo, needs_gdal

CLASSES = ["water", "soil", "vegetation"]
UTM_WKT = rasterio.crs.CRS.from_epsg(32611).to_wkt()


def label_map(h: int = 37, w: int = 29, k: int = 3, seed: int = 0) -> np.ndarray:
    """Class indices 0..k-1, with -1 (no class) in a corner."""
    labels = np.random.default_rng(seed).integers(0, k, (h, w))
    labels[:5, :4] = -1
    return labels


def probabilities(h: int = 37, w: int = 29, k: int = 3) -> np.ndarray:
    values = np.random.default_rng(1).random((h, w, k)).astype(np.float32)
    return values / values.sum(axis=2, keepdims=True)


def write_tiles(path, whole: np.ndarray, tile: int, **options) -> None:
    """Write `whole` tile by tile, tiles in a shuffled order."""
    h, w = whole.shape[:2]
    origins = [(r, c) for r in range(0, h, tile) for c in range(0, w, tile)]
    np.random.default_rng(2).shuffle(origins)
    with open_map_writer(path, height=h, width=w, **options) as writer:
        for r, c in origins:
            writer.write(r, c, whole[r : r + tile, c : c + tile])


def files_in(folder) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


@needs_gdal
def test_geotiff_label_map_is_georeferenced_with_categories_and_colours(tmp_path):
    labels = label_map()
    path = tmp_path / "map.tif"
    write_tiles(path, labels, 10, class_names=CLASSES, crs=UTM_WKT, transform=UTM_TRANSFORM)
    assert files_in(tmp_path) == ["map.tif", "map.tif.aux.xml"]
    info = gdalinfo(path)
    assert 'ID["EPSG",32611]' in info["coordinateSystem"]["wkt"]
    assert info["geoTransform"] == list(UTM_TRANSFORM)
    band = info["bands"][0]
    assert band["categories"] == ["Unclassified", *CLASSES]
    assert band["noDataValue"] == 0 and band["type"] == "Byte"
    colours = [entry[:3] for entry in band["colorTable"]["entries"][:4]]
    assert colours == [[0, 0, 0], *map(list, class_palette(3))]
    assert info["metadata"]["IMAGE_STRUCTURE"]["COMPRESSION"] == "DEFLATE"
    with rasterio.open(path) as dataset:
        np.testing.assert_array_equal(dataset.read(1), labels + 1)
        assert dataset.profile["tiled"] and dataset.nodata == 0
        assert dataset.colormap(1)[1] == (*class_palette(3)[0], 255)
    np.testing.assert_array_equal(read_labels(path), labels + 1)


@needs_gdal
def test_envi_classification_is_read_by_gdal_and_spectral(tmp_path):
    labels = label_map()
    write_tiles(
        tmp_path / "map.hdr", labels, 16, class_names=CLASSES, crs=UTM_WKT, transform=UTM_TRANSFORM
    )
    assert files_in(tmp_path) == ["map.hdr", "map.img"]
    info = gdalinfo(tmp_path / "map.img")
    band = info["bands"][0]
    assert band["categories"] == ["Unclassified", *CLASSES]
    colours = [entry[:3] for entry in band["colorTable"]["entries"]]
    assert colours == [[0, 0, 0], *map(list, class_palette(3))]
    assert info["geoTransform"] == list(UTM_TRANSFORM)
    assert 'ID["EPSG",32611]' in info["coordinateSystem"]["wkt"]
    image = envi.open(str(tmp_path / "map.hdr"))
    assert image.metadata["file type"] == "ENVI Classification"
    assert image.metadata["classes"] == "4"
    assert image.metadata["class names"] == ["Unclassified", *CLASSES]
    np.testing.assert_array_equal(image.read_band(0), labels + 1)
    with open_source(tmp_path / "map.hdr") as source:
        assert epsg(source.crs) == 32611 and source.transform == UTM_TRANSFORM


@needs_gdal
@pytest.mark.parametrize("suffix", [".tif", ".hdr"])
def test_probability_maps_name_their_bands_after_the_classes(tmp_path, suffix):
    values = probabilities()
    path = tmp_path / f"probabilities{suffix}"
    write_tiles(
        path,
        values,
        12,
        class_names=CLASSES,
        kind="probabilities",
        crs=UTM_WKT,
        transform=UTM_TRANSFORM,
    )
    info = gdalinfo(path if suffix == ".tif" else path.with_suffix(".img"))
    assert [band["description"] for band in info["bands"]] == CLASSES
    assert all(band["type"] == "Float32" for band in info["bands"])
    assert info["geoTransform"] == list(UTM_TRANSFORM)
    with open_source(path) as source:
        np.testing.assert_array_equal(source.read(slice(None), slice(None)), values)
        assert epsg(source.crs) == 32611


@pytest.mark.parametrize("suffix", [".tif", ".img"])
@pytest.mark.parametrize("kind", ["labels", "probabilities"])
def test_tile_by_tile_equals_one_whole_write(tmp_path, suffix, kind):
    whole = label_map() if kind == "labels" else probabilities()
    options = {"class_names": CLASSES, "kind": kind, "transform": UTM_TRANSFORM, "crs": UTM_WKT}
    write_tiles(tmp_path / f"tiles{suffix}", whole, 7, **options)
    write_tiles(tmp_path / f"whole{suffix}", whole, 64, **options)
    with (
        open_source(tmp_path / f"tiles{suffix}") as tiles,
        open_source(tmp_path / f"whole{suffix}") as one,
    ):
        by_tiles = tiles.read(slice(None), slice(None), nodata=0.0)
        np.testing.assert_array_equal(by_tiles, one.read(slice(None), slice(None), nodata=0.0))
    expected = whole[..., None] + 1 if kind == "labels" else whole
    np.testing.assert_array_equal(by_tiles, expected)


def test_many_classes_take_uint16(tmp_path):
    names = [f"class {i}" for i in range(300)]
    labels = np.arange(300).reshape(15, 20)
    with open_map_writer(
        tmp_path / "many.tif", height=15, width=20, class_names=names, transform=UTM_TRANSFORM
    ) as writer:
        writer.write(0, 0, labels)
    with rasterio.open(tmp_path / "many.tif") as dataset:
        assert dataset.dtypes[0] == "uint16"
        np.testing.assert_array_equal(dataset.read(1), labels + 1)
        assert len(dataset.colormap(1)) >= 301


@needs_gdal
@pytest.mark.parametrize("name", ["plain.tif", "plain.img"])
def test_without_georeferencing_maps_are_plain_and_quiet(tmp_path, capfd, name):
    path = tmp_path / name
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        write_tiles(path, label_map(), 16, class_names=CLASSES)
        with open_source(path) as source:
            assert source.crs is None and source.transform is None
            np.testing.assert_array_equal(
                source.read(slice(None), slice(None), nodata=0.0)[..., 0], label_map() + 1
            )
    info = gdalinfo(path)
    assert "coordinateSystem" not in info or not info["coordinateSystem"].get("wkt")
    assert "geoTransform" not in info
    assert info["bands"][0]["categories"] == ["Unclassified", *CLASSES]
    assert capfd.readouterr().err == ""
    if name.endswith(".img"):
        assert "map info" not in (tmp_path / "plain.hdr").read_text()


@pytest.mark.parametrize("name", ["failed.tif", "failed.hdr"])
def test_a_failed_run_leaves_no_file(tmp_path, name):
    writer = open_map_writer(tmp_path / name, height=8, width=8, class_names=CLASSES)
    with pytest.raises(RuntimeError, match="model crashed"), writer:
        writer.write(0, 0, np.zeros((4, 8), int))
        assert not (tmp_path / name).exists()  # only a temporary file so far
        raise RuntimeError("model crashed")
    assert files_in(tmp_path) == []


def test_probabilities_over_an_old_label_map_drop_its_categories(tmp_path):
    path = tmp_path / "map.tif"
    options = {"class_names": CLASSES, "transform": UTM_TRANSFORM}
    write_tiles(path, label_map(), 32, **options)
    assert (tmp_path / "map.tif.aux.xml").exists()
    write_tiles(path, probabilities(), 32, kind="probabilities", **options)
    assert files_in(tmp_path) == ["map.tif"]
    with rasterio.open(path) as dataset:
        assert dataset.descriptions == tuple(CLASSES)


def test_bad_tiles_and_options(tmp_path):
    writer = open_map_writer(tmp_path / "map.tif", height=10, width=8, class_names=CLASSES)
    with pytest.raises(
        S3FNDataError, match=r"map\.tif: tile 4x4 at row 8, column 0 does not fit in the 10x8 map"
    ):
        writer.write(8, 0, np.zeros((4, 4), int))
    with pytest.raises(
        S3FNDataError,
        match=r"label tile at row 0, column 0 holds class 3; expected -1 \(no class\) to 2",
    ):
        writer.write(0, 0, np.full((2, 2), 3))
    with pytest.raises(S3FNDataError, match=r"label tile is 2-D float64; expected an h x w array"):
        writer.write(0, 0, np.zeros((2, 2)))
    writer.close()
    with pytest.raises(ValueError, match="the writer is closed"):
        writer.write(0, 0, np.zeros((2, 2), int))
    probability = open_map_writer(
        tmp_path / "p.tif", height=4, width=4, class_names=CLASSES, kind="probabilities"
    )
    with pytest.raises(S3FNDataError, match=r"probability tile is float64 \(4, 4, 2\); expected"):
        probability.write(0, 0, np.zeros((4, 4, 2)))
    probability.abort()
    with pytest.raises(S3FNDataError, match=r"map\.png: unsupported map format '\.png'"):
        open_map_writer(tmp_path / "map.png", height=4, width=4, class_names=CLASSES)
    with pytest.raises(S3FNDataError, match=r"class name 'a, b' holds ','"):
        open_map_writer(tmp_path / "m.hdr", height=4, width=4, class_names=["a, b", "c"])
    with pytest.raises(S3FNDataError, match="expected at least one, all different"):
        open_map_writer(tmp_path / "m.tif", height=4, width=4, class_names=["a", "a"])
    with pytest.raises(S3FNDataError, match=r"transform has 4 values; expected 6"):
        open_map_writer(
            tmp_path / "m.tif", height=4, width=4, class_names=CLASSES, transform=(0, 1, 0, 1)
        )
    assert files_in(tmp_path) == ["map.tif", "map.tif.aux.xml"]


@pytest.mark.parametrize("name", ["large.tif", "large.img"])
def test_a_map_larger_than_its_tiles_is_never_held_whole(tmp_path, name):
    options = {"class_names": CLASSES, "transform": UTM_TRANSFORM}
    class_palette(3)  # its first call imports matplotlib, which is no part of the map
    tracemalloc.start()
    with open_map_writer(tmp_path / name, height=8192, width=8192, **options) as writer:
        writer.write(4096, 512, label_map(64, 64))
        _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert peak < 4 * 2**20, f"writing a 64 x 64 tile of an 8192 x 8192 map took {peak} bytes"
    with open_source(tmp_path / name) as source:
        np.testing.assert_array_equal(
            source.read(slice(4096, 4160), slice(512, 576), nodata=0.0)[..., 0],
            label_map(64, 64) + 1,
        )
        assert not source.read(slice(0, 512), slice(0, 512), nodata=0.0).any()
