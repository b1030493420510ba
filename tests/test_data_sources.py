"""open_source: every format read lazily by windows, on files written by GDAL and the real
writers, with band metadata and georeferencing, and every bad input."""

from __future__ import annotations

import json
import shutil
import subprocess
import tracemalloc
from pathlib import Path

import h5py
import numpy as np
import pytest
import rasterio
import rasterio.shutil
import scipy.io
import spectral.io.envi as envi
from rasterio.crs import CRS
from rasterio.transform import Affine

from s3fn.data import Cube, S3FNDataError, read_cube, read_labels
from s3fn.io import from_array, is_supported, open_source
from tests.data_helpers import cube, save_mat73

GDAL_TOOLS = shutil.which("gdal_translate") and shutil.which("gdalinfo")
needs_gdal = pytest.mark.skipif(
    not GDAL_TOOLS,
    reason="gdal_translate / gdalinfo not found (Debian: apt-get install gdal-bin; "
    "`make test` installs it where it can)",
)
UTM_MAP_INFO = "{UTM, 1.000, 1.000, 500000.000, 4100000.000, 30.000, 30.000, 11, North, WGS-84}"
UTM_TRANSFORM = (500000.0, 30.0, 0.0, 4100000.0, 0.0, -30.0)
EMIT_WKT = CRS.from_epsg(4326).to_wkt()
EMIT_TRANSFORM = (-117.5, 0.000542232520, 0.0, 36.2, 0.0, -0.000542232520)


def gdal(*args: str | Path) -> str:
    """Run a GDAL command-line tool, which must print no warning; its standard output."""
    done = subprocess.run([str(a) for a in args], capture_output=True, text=True, check=True)
    assert done.stderr == "", done.stderr
    return done.stdout


def gdalinfo(path: Path) -> dict:
    """`gdalinfo -json` of a file, parsed."""
    return json.loads(gdal("gdalinfo", "-json", path))


def epsg(wkt: str | None) -> int | None:
    """The EPSG code a WKT string stands for."""
    return None if wkt is None else CRS.from_wkt(wkt).to_epsg()


def utm_envi(folder: Path, data: np.ndarray, **header: object) -> Path:
    """An ENVI cube in UTM zone 11N, written by `spectral`, with µm band centres and widths."""
    bands = data.shape[2]
    metadata = {
        "map info": UTM_MAP_INFO,
        "wavelength": [round(0.4 + 0.1 * i, 3) for i in range(bands)],
        "wavelength units": "Micrometers",
        "fwhm": [0.01] * bands,
        **header,
    }
    path = folder / "scene.hdr"
    envi.save_image(str(path), data, dtype=data.dtype, metadata=metadata, force=True)
    return path


def geotiff(path: Path, data: np.ndarray, **profile: object) -> Path:
    """An H x W x B cube as a tiled GeoTIFF (16 x 16 tiles) written by rasterio."""
    settings = {
        "driver": "GTiff",
        "height": data.shape[0],
        "width": data.shape[1],
        "count": data.shape[2],
        "dtype": data.dtype.name,
        "crs": CRS.from_epsg(32611),
        "transform": Affine.from_gdal(*UTM_TRANSFORM),
        "tiled": True,
        "blockxsize": 16,
        "blockysize": 16,
        **profile,
    }
    with rasterio.open(path, "w", **settings) as dataset:
        dataset.write(np.moveaxis(data, -1, 0))
    return path


def emit_netcdf(path: Path, data: np.ndarray, glt_shape: tuple[int, int] | None) -> Path:
    """A NetCDF-4 file laid out as EMIT L2A reflectance: the cube downtrack x crosstrack x bands
    (chunked, fill -9999), `sensor_band_parameters/{wavelengths, fwhm, good_wavelengths}`, a
    `location` group with the geometry lookup table, global `geotransform` / `spatial_ref`."""
    bands = data.shape[2]
    with h5py.File(path, "w") as handle:
        reflectance = handle.create_dataset("reflectance", data=data, chunks=(4, 4, bands))
        reflectance.attrs["_FillValue"] = np.float32(-9999.0)
        params = handle.create_group("sensor_band_parameters")
        wavelengths = params.create_dataset("wavelengths", data=381.0 + 7.5 * np.arange(bands))
        wavelengths.attrs["units"] = "nm"
        params.create_dataset("fwhm", data=np.full(bands, 8.5, np.float32))
        good = np.ones(bands, np.uint8)
        good[1] = 0
        params.create_dataset("good_wavelengths", data=good)
        if glt_shape is not None:
            location = handle.create_group("location")
            location.create_dataset("glt_x", data=np.zeros(glt_shape, np.int32))
            location.create_dataset("glt_y", data=np.zeros(glt_shape, np.int32))
            location.create_dataset("lat", data=np.zeros(data.shape[:2]))
        handle.attrs["geotransform"] = np.array(EMIT_TRANSFORM)
        handle.attrs["spatial_ref"] = EMIT_WKT
        handle.attrs["title"] = "EMIT L2A Surface Reflectance 60 m V001"
    return path


def windows_of(shape: tuple[int, ...], step: tuple[int, int]) -> list[tuple[slice, slice]]:
    """A grid of windows covering `shape`, the last ones cut by its edges."""
    return [
        (slice(r, r + step[0]), slice(c, c + step[1]))
        for r in range(0, shape[0], step[0])
        for c in range(0, shape[1], step[1])
    ]


def assert_reads_by_windows(source, expected: np.ndarray, step: tuple[int, int]) -> None:
    """Windows of `source` equal those of `expected`, and put together they equal the whole."""
    assembled = np.full(expected.shape, np.nan, np.float32)
    for rows, cols in windows_of(expected.shape, step):
        window = source.read(rows, cols)
        assert window.dtype == np.float32 and window.flags.c_contiguous
        np.testing.assert_array_equal(window, expected[rows, cols])
        assembled[rows, cols] = window
    np.testing.assert_array_equal(assembled, source.read(slice(None), slice(None)))


@needs_gdal
def test_envi_and_its_gdal_translations_agree(tmp_path):
    data = (cube(7, 6, 3) * 1000).astype(np.int16)
    header = tmp_path / "scene.hdr"
    envi.save_image(
        str(header),
        data,
        dtype=np.int16,
        interleave="bil",
        byteorder=1,
        metadata={
            "map info": UTM_MAP_INFO,
            "wavelength": [0.4, 0.5, 0.6],
            "wavelength units": "Micrometers",
            "fwhm": [0.01, 0.01, 0.012],
            "bbl": [1, 0, 1],
        },
    )
    gdal("gdal_translate", "-q", "-of", "GTiff", tmp_path / "scene.img", tmp_path / "scene.tif")
    gdal("gdal_translate", "-q", "-of", "netCDF", tmp_path / "scene.img", tmp_path / "scene.nc")
    for name in ("scene.hdr", "scene.tif", "scene.nc"):
        with open_source(tmp_path / name) as source:
            assert source.shape == (7, 6, 3), name
            np.testing.assert_array_equal(source.read(slice(None), slice(None)), data)
            assert epsg(source.crs) == 32611, name
            np.testing.assert_allclose(source.transform, UTM_TRANSFORM)
            np.testing.assert_allclose(source.wavelengths, [400.0, 500.0, 600.0])
    with open_source(header) as source:
        np.testing.assert_allclose(source.fwhm, [10.0, 10.0, 12.0])
        np.testing.assert_array_equal(source.good_bands, [True, False, True])
    with open_source(tmp_path / "scene.tif") as source:  # GDAL >= 3.10 keeps the widths
        assert source.fwhm is None or np.allclose(source.fwhm, [10.0, 10.0, 12.0])


@needs_gdal
def test_cloud_optimised_geotiff_is_read_by_windows(tmp_path):
    data = cube(150, 137, 3)  # 2 x 2 tiles of 128 x 128
    geotiff(tmp_path / "plain.tif", data, tiled=False)
    gdal(
        "gdal_translate", "-q", "-of", "COG", "-co", "BLOCKSIZE=128", "-co", "COMPRESS=DEFLATE",
        tmp_path / "plain.tif", tmp_path / "cog.tif",
    )  # fmt: skip
    info = gdalinfo(tmp_path / "cog.tif")
    assert info["metadata"]["IMAGE_STRUCTURE"]["LAYOUT"] == "COG"
    assert info["bands"][0]["block"] == [128, 128]
    with open_source(tmp_path / "cog.tif") as source:
        assert_reads_by_windows(source, data, (64, 50))
        np.testing.assert_allclose(source.transform, UTM_TRANSFORM)


def _every_format(folder: Path, data: np.ndarray) -> dict[str, Path]:
    paths = {}
    for interleave in ("bsq", "bil", "bip"):
        header = folder / f"{interleave}.hdr"
        envi.save_image(str(header), data, interleave=interleave, byteorder=1)
        paths[f"envi-{interleave}"] = header
    np.save(folder / "c.npy", data)
    np.savez(folder / "c.npz", cube=data)
    scipy.io.savemat(folder / "v5.mat", {"cube": data})
    save_mat73(folder / "v73.mat", {"cube": data})
    with h5py.File(folder / "c.h5", "w") as handle:
        handle.create_dataset("cube", data=data, chunks=(5, 4, 2))
    paths.update(
        npy=folder / "c.npy",
        npz=folder / "c.npz",
        mat5=folder / "v5.mat",
        mat73=folder / "v73.mat",
        hdf5=folder / "c.h5",
        geotiff=geotiff(folder / "c.tif", data),
        emit=emit_netcdf(folder / "c.nc", data, glt_shape=None),
    )
    return paths


def test_reads_by_windows_equal_the_whole_in_every_format(tmp_path):
    data = cube(19, 23, 4)
    for name, path in _every_format(tmp_path, data).items():
        with open_source(path) as source:
            assert source.shape == (19, 23, 4), name
            assert_reads_by_windows(source, data, (6, 7))
            assert source.read(slice(5, 5), slice(0, 3)).shape == (0, 3, 4)
            np.testing.assert_array_equal(
                source.read(slice(-3, None), slice(None, 2)), data[-3:, :2]
            )


def _large_empty_scene(folder: Path, kind: str, shape: tuple[int, int, int]) -> Path:
    """A 256 MB scene of zeros that takes (almost) no disk: a sparse or unwritten file."""
    if kind == "npy":
        np.lib.format.open_memmap(folder / "big.npy", "w+", np.float32, shape).flush()
        return folder / "big.npy"
    if kind == "envi":
        np.memmap(folder / "big.img", np.float32, "w+", shape=shape).flush()
        (folder / "big.hdr").write_text(
            f"ENVI\nsamples = {shape[1]}\nlines = {shape[0]}\nbands = {shape[2]}\n"
            "header offset = 0\nfile type = ENVI Standard\ndata type = 4\n"
            "interleave = bip\nbyte order = 0\n"
        )
        return folder / "big.hdr"
    if kind == "hdf5":
        with h5py.File(folder / "big.h5", "w") as handle:
            handle.create_dataset("cube", shape, np.float32, chunks=(256, 256, shape[2]))
        return folder / "big.h5"
    path = folder / "big.tif"
    with rasterio.open(
        path, "w", driver="GTiff", height=shape[0], width=shape[1], count=shape[2],
        dtype="float32", tiled=True, sparse_ok=True, transform=Affine.from_gdal(*UTM_TRANSFORM),
    ):  # fmt: skip
        pass  # tiles never written stay absent (sparse) and read as zeros
    return path


@pytest.mark.parametrize("kind", ["npy", "envi", "hdf5", "geotiff"])
def test_a_window_of_a_large_scene_reads_only_that_window(tmp_path, kind):
    path = _large_empty_scene(tmp_path, kind, (4096, 4096, 4))
    with open_source(path) as source:
        assert source.shape == (4096, 4096, 4)
        tracemalloc.start()
        window = source.read(slice(1000, 1064), slice(3000, 3064))
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    assert window.shape == (64, 64, 4) and not window.any()
    assert peak < 2 * 2**20, f"reading a 64 kB window of a 256 MB scene took {peak} bytes"


def test_geotiff_band_centres_from_the_imagery_domain_and_enmap_box_items(tmp_path):
    data = cube(5, 4, 3)
    imagery = geotiff(tmp_path / "imagery.tif", data)
    with rasterio.open(imagery, "r+") as dataset:
        for band, (centre, width) in enumerate([(0.45, 0.01), (0.55, 0.012), (2.2, 0.02)], 1):
            dataset.update_tags(band, ns="IMAGERY", CENTRAL_WAVELENGTH_UM=centre, FWHM_UM=width)
    with open_source(imagery) as source:
        np.testing.assert_allclose(source.wavelengths, [450.0, 550.0, 2200.0])
        np.testing.assert_allclose(source.fwhm, [10.0, 12.0, 20.0])
        assert source.good_bands is None
    # as the EnMAP-Box writes imported EnMAP / PRISMA / EMIT products: items on each band
    items = geotiff(tmp_path / "prisma.tif", data)
    with rasterio.open(items, "r+") as dataset:
        for band, (centre, width, usable) in enumerate([(402.4, 11.2, 1), (409.8, 11.9, 0)], 1):
            dataset.update_tags(band, wavelength=centre, fwhm=width, bbl=usable)
            dataset.update_tags(band, wavelength_units="Nanometers")
        dataset.update_tags(3, wavelength=2.497, fwhm=0.0091, bbl=1, wavelength_units="um")
    with open_source(items) as source:
        np.testing.assert_allclose(source.wavelengths, [402.4, 409.8, 2497.0])
        np.testing.assert_allclose(source.fwhm, [11.2, 11.9, 9.1])
        np.testing.assert_array_equal(source.good_bands, [True, False, True])


def test_gdal_3_10_translation_keeps_fwhm_in_the_imagery_domain(tmp_path):
    header = utm_envi(tmp_path, cube(4, 3, 2))
    rasterio.shutil.copy(tmp_path / "scene.img", tmp_path / "scene.tif", driver="GTiff")
    with open_source(tmp_path / "scene.tif") as source:
        np.testing.assert_allclose(source.wavelengths, [400.0, 500.0])
        np.testing.assert_allclose(source.fwhm, [10.0, 10.0])
    with open_source(header) as source:
        np.testing.assert_allclose(source.fwhm, [10.0, 10.0])


ENMAP_PRODUCT = "ENMAP01-____L2A-DT0000004950_20221103T162438Z_001_V010110_20221118T145147Z"


def test_enmap_geotiff_band_characterisation_and_nodata(tmp_path):
    data = (cube(6, 5, 3) * 10000).astype(np.int16)
    data[0, 0] = -32768
    image = geotiff(tmp_path / f"{ENMAP_PRODUCT}-SPECTRAL_IMAGE.TIF", data, nodata=-32768)
    bands = "".join(
        f'<bandID number="{i + 1}"><wavelengthCenterOfBand>{418.4 + 5 * i}'
        f"</wavelengthCenterOfBand><FWHMOfBand>{6.5 + i}</FWHMOfBand><GainOfBand>2e-05"
        "</GainOfBand><OffsetOfBand>0</OffsetOfBand></bandID>"
        for i in range(3)
    )
    (tmp_path / f"{ENMAP_PRODUCT}-METADATA.XML").write_text(
        f'<?xml version="1.0" encoding="UTF-8"?><level_X><specific><bandCharacterisation>'
        f"{bands}</bandCharacterisation></specific></level_X>"
    )
    with open_source(image) as source:
        np.testing.assert_allclose(source.wavelengths, [418.4, 423.4, 428.4])
        np.testing.assert_allclose(source.fwhm, [6.5, 7.5, 8.5])
        whole = source.read(slice(None), slice(None))
    assert np.isnan(whole[0, 0]).all()  # no data reads as NaN in every band
    np.testing.assert_allclose(whole[1:], data[1:] * 2e-5, rtol=1e-6)  # GainOfBand applied


def _enmap_l2a(folder: Path, data: np.ndarray, gains, offsets, **profile: object) -> Path:
    """An EnMAP L2A SPECTRAL_IMAGE GeoTIFF with its METADATA.XML (gain and offset per band)."""
    image = geotiff(folder / f"{ENMAP_PRODUCT}-SPECTRAL_IMAGE.TIF", data, **profile)
    bands = "".join(
        f'<bandID number="{i + 1}"><wavelengthCenterOfBand>{420.0 + 10 * i}'
        f"</wavelengthCenterOfBand><FWHMOfBand>7.0</FWHMOfBand><GainOfBand>{gain}</GainOfBand>"
        f"<OffsetOfBand>{offset}</OffsetOfBand></bandID>"
        for i, (gain, offset) in enumerate(zip(gains, offsets, strict=True))
    )
    (folder / f"{ENMAP_PRODUCT}-METADATA.XML").write_text(
        f'<?xml version="1.0" encoding="UTF-8"?><level_X><specific><bandCharacterisation>'
        f"{bands}</bandCharacterisation></specific></level_X>"
    )
    return image


def test_enmap_l2a_reads_as_reflectance_through_its_gains_and_offsets(tmp_path):
    data = (cube(6, 5, 3) * 10000).astype(np.int16)
    gains, offsets = [1e-4, 1e-4, 2e-4], [0.0, 0.0, -0.1]
    image = _enmap_l2a(tmp_path, data, gains, offsets, nodata=-32768)
    reflectance = read_cube(image).data
    expected = data * np.array(gains) + np.array(offsets)
    np.testing.assert_allclose(reflectance, expected, rtol=1e-5, atol=1e-7)
    assert 0.0 < reflectance[..., 0].max() <= 1.0


def test_enmap_geotiff_scale_of_its_own_wins_over_the_metadata_gains(tmp_path):
    data = (cube(6, 5, 3) * 10000).astype(np.int16)
    image = _enmap_l2a(tmp_path, data, [1e-4] * 3, [0.0] * 3)
    with rasterio.open(image, "r+") as dataset:
        dataset.scales, dataset.offsets = (0.5, 0.5, 0.5), (1.0, 1.0, 1.0)
    np.testing.assert_allclose(read_cube(image).data, data * 0.5 + 1.0)


def test_enmap_metadata_with_gains_missing_for_some_bands(tmp_path):
    image = _enmap_l2a(tmp_path, cube(6, 5, 3), [1e-4] * 3, [0.0] * 3)
    metadata = tmp_path / f"{ENMAP_PRODUCT}-METADATA.XML"
    metadata.write_text(metadata.read_text().replace("<GainOfBand>0.0001</GainOfBand>", "", 1))
    with pytest.raises(
        S3FNDataError, match=r"METADATA\.XML: bandCharacterisation lists 2 GainOfBand; expected 3"
    ):
        open_source(image)


def test_emit_netcdf_swath(tmp_path):
    data = cube(9, 7, 5)
    data[2, 3] = -9999.0  # a fill pixel
    path = emit_netcdf(tmp_path / "EMIT_L2A_RFL_001_20230316T045133_2307503_005.nc", data, (11, 13))
    with open_source(path) as source:
        assert source.shape == (9, 7, 5) and source.field == "reflectance"
        np.testing.assert_allclose(source.wavelengths, 381.0 + 7.5 * np.arange(5))
        np.testing.assert_allclose(source.fwhm, 8.5)
        np.testing.assert_array_equal(source.good_bands, [True, False, True, True, True])
        # the geotransform is that of the lookup table's orthorectified grid, not the swath's
        assert source.crs is None and source.transform is None
        expected = data.copy()
        expected[2, 3] = np.nan
        assert_reads_by_windows(source, expected, (4, 3))
    cube_read = read_cube(path)
    np.testing.assert_array_equal(cube_read.good_bands, [True, False, True, True, True])
    np.testing.assert_allclose(cube_read.fwhm, 8.5)


def test_emit_netcdf_on_its_own_grid_is_georeferenced(tmp_path):
    data = cube(9, 7, 5)
    for glt_shape in (None, (9, 7)):
        with open_source(emit_netcdf(tmp_path / "ortho.nc", data, glt_shape)) as source:
            assert source.crs == EMIT_WKT and epsg(source.crs) == 4326
            assert source.transform == EMIT_TRANSFORM


@needs_gdal
def test_read_cube_and_read_labels_take_geotiff_and_netcdf(tmp_path):
    utm_envi(tmp_path, cube(6, 5, 3))
    gdal("gdal_translate", "-q", "-of", "GTiff", tmp_path / "scene.img", tmp_path / "scene.tif")
    result = read_cube(tmp_path / "scene.tif")
    np.testing.assert_array_equal(result.data, cube(6, 5, 3))
    np.testing.assert_allclose(result.wavelengths, [400.0, 500.0, 600.0])
    labels = (np.arange(30).reshape(6, 5) % 4).astype(np.uint8)
    envi.save_image(
        str(tmp_path / "gt.hdr"), labels[..., None], metadata={"map info": UTM_MAP_INFO}
    )
    gdal(
        "gdal_translate",
        "-q",
        "-of",
        "GTiff",
        "-a_nodata",
        "3",
        tmp_path / "gt.img",
        tmp_path / "gt.tif",
    )
    gdal("gdal_translate", "-q", "-of", "netCDF", tmp_path / "gt.img", tmp_path / "gt.nc")
    expected = np.where(labels == 3, 0, labels)  # the no-data value is unlabelled
    np.testing.assert_array_equal(read_labels(tmp_path / "gt.tif"), expected)
    # GDAL stores NetCDF rows bottom-up; read through GDAL they come back top-down
    np.testing.assert_array_equal(read_labels(tmp_path / "gt.nc"), labels)
    assert all(is_supported(Path(n)) for n in ("a.tif", "a.TIFF", "a.nc"))


def test_envi_scale_and_ignore_value(tmp_path):
    data = (cube(4, 3, 2) * 10000).astype(np.int16)
    data[1, 1, 0] = -9999
    header = utm_envi(
        tmp_path, data, **{"reflectance scale factor": 10000, "data ignore value": -9999}
    )
    expected = data / np.float32(10000)
    expected[1, 1] = np.nan  # one band at the ignore value: the whole pixel is no data
    with open_source(header) as source:
        np.testing.assert_allclose(source.read(slice(None), slice(None)), expected, rtol=1e-6)
        zeroed = source.read(slice(None), slice(None), nodata=0.0)
    np.testing.assert_array_equal(zeroed[1, 1], 0.0)


def test_from_array_and_cube():
    data = cube(5, 4, 3)
    with from_array(data, wavelengths=[500, 600, 700]) as source:
        assert source.path is None and source.shape == (5, 4, 3)
        np.testing.assert_array_equal(source.read(slice(1, 3), slice(None)), data[1:3])
        np.testing.assert_array_equal(source.wavelengths, [500.0, 600.0, 700.0])
    good = np.array([True, True, False])
    source = from_array(Cube(data, np.array([1.0, 2.0, 3.0]), np.ones(3), good))
    np.testing.assert_array_equal(source.good_bands, good)
    np.testing.assert_array_equal(source.fwhm, [1.0, 1.0, 1.0])
    source.close()
    with pytest.raises(ValueError, match="in-memory cube: the source is closed"):
        source.read(slice(None), slice(None))


def test_inf_is_reported_only_where_read_and_nan_is_no_data(tmp_path):
    data = cube(8, 6, 3)
    data[5, 4, 2] = np.inf
    data[1, 1, 0] = np.nan
    np.save(tmp_path / "holes.npy", data)
    with open_source(tmp_path / "holes.npy") as source:
        expected = data[:4].copy()
        expected[1, 1] = np.nan  # one NaN band makes the whole pixel no data
        np.testing.assert_array_equal(source.read(slice(0, 4), slice(None)), expected)
        with pytest.raises(
            S3FNDataError,
            match=r"holes\.npy: array rows 4:8, columns 2:6 has 1 Inf values "
            r"\(first at row 1, column 2, band 2\); expected finite values or NaN \(no data\)",
        ):
            source.read(slice(4, 8), slice(2, 6))


def test_bad_files(tmp_path):
    (tmp_path / "broken.tif").write_bytes(b"II*\0 not a tiff")
    with pytest.raises(S3FNDataError, match=r"broken\.tif: not a readable GeoTIFF file"):
        open_source(tmp_path / "broken.tif")
    (tmp_path / "broken.nc").write_bytes(b"CDF\x01 truncated")
    with pytest.raises(S3FNDataError, match=r"broken\.nc: not a readable NetCDF file"):
        open_source(tmp_path / "broken.nc")
    geotiff(tmp_path / "c.tif", cube(4, 4, 2))
    with pytest.raises(S3FNDataError, match=r"c\.tif: this file holds one cube; key='x'"):
        open_source(tmp_path / "c.tif", key="x")
    with open_source(tmp_path / "c.tif") as source, pytest.raises(ValueError, match="step 1"):
        source.read(slice(0, 4, 2), slice(None))


def test_bad_emit_files(tmp_path):
    path = emit_netcdf(tmp_path / "emit.nc", cube(6, 5, 4), glt_shape=None)
    with pytest.raises(S3FNDataError, match=r"emit\.nc: no numeric array named 'radiance'"):
        open_source(path, key="radiance")
    with h5py.File(path, "r+") as handle:
        del handle["sensor_band_parameters/fwhm"]
        handle["sensor_band_parameters/fwhm"] = np.ones(3)
    with pytest.raises(
        S3FNDataError,
        match=r"emit\.nc: sensor_band_parameters/fwhm has 3 values; expected 4, one per band",
    ):
        open_source(path)
    with h5py.File(path, "r+") as handle:
        del handle["reflectance"]
        handle["reflectance"] = np.ones((6, 5))
    with pytest.raises(S3FNDataError, match=r"emit\.nc: no 3-D array; expected a 3-D HxWxB cube"):
        open_source(path)


def test_bad_band_metadata(tmp_path):
    path = geotiff(tmp_path / "c.tif", cube(4, 4, 3))
    with rasterio.open(path, "r+") as dataset:
        dataset.update_tags(1, wavelength=500)
        dataset.update_tags(2, wavelength=600)
    with pytest.raises(
        S3FNDataError,
        match=r"c\.tif: band metadata item 'wavelength' is on 2 of 3 bands; expected one per band",
    ):
        open_source(path)
    with rasterio.open(path, "r+") as dataset:
        dataset.update_tags(3, wavelength="red")
    with pytest.raises(S3FNDataError, match="item 'wavelength' is not numeric"):
        open_source(path)


def test_netcdf_with_several_variables_needs_a_key(tmp_path):
    path = tmp_path / "two.nc"
    with h5py.File(path, "w") as handle:  # NetCDF-4, not EMIT: read through GDAL
        handle["temperature"] = np.ones((4, 5), np.float32)
        handle["pressure"] = np.full((4, 5), 2.0, np.float32)
    with pytest.raises(
        S3FNDataError, match=r"two\.nc: 2 variables \(.*\); pass key= to choose one"
    ):
        open_source(path)
    with open_source(path, key="pressure") as source:
        assert source.shape == (4, 5, 1) and source.field == "pressure"
        np.testing.assert_array_equal(source.read(slice(None), slice(None)), 2.0)
    with pytest.raises(S3FNDataError, match=r"no variable named 'wind'; expected one of"):
        open_source(path, key="wind")


def test_reading_a_mapped_scene_strip_by_strip_does_not_accumulate_in_memory(tmp_path):
    """Each read drops its pages from the map, so a scene larger than memory can be streamed."""
    path = tmp_path / "scene.npy"
    mapped = np.lib.format.open_memmap(path, "w+", np.float32, (1000, 1000, 40))
    mapped[:] = 0.5
    mapped.flush()
    del mapped

    def resident_mb() -> float:
        status = Path("/proc/self/status").read_text()
        return int(status.split("VmRSS:")[1].split()[0]) / 1024

    with open_source(path) as source:
        source.read(slice(0, 50), slice(0, 1000))
        before = resident_mb()
        for row in range(0, 1000, 50):
            strip = source.read(slice(row, row + 50), slice(0, 1000))
        assert float(strip.mean()) == 0.5
    assert resident_mb() - before < 40  # the file is 160 MB; one strip is 8 MB
