"""Truncated or corrupt cube files, in every format: one line naming the file and what is wrong,
whether the damage shows on opening or only at a later tile, in training and in prediction,
and nothing written for them (no map, probabilities, preview or predictions.csv)."""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import h5py
import numpy as np
import pytest

from s3fn.cli import main
from s3fn.data import Preprocessor, S3FNDataError
from s3fn.inference import Classifier
from s3fn.io import open_source
from s3fn.models import SpectralMeanMLP
from tests.cli_helpers import BANDS, TINY, object_folder, s3fn
from tests.test_data_sources import emit_netcdf, geotiff, utm_envi
from tests.test_distributed import free_port


def _cut(path: Path, fraction: float) -> Path:
    """Keep the first `fraction` of the file's bytes, as an interrupted download does."""
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * fraction)])
    return path


def geotiff_tail(folder: Path, data: np.ndarray) -> Path:
    """A tiled GeoTIFF whose header and first tiles are whole and whose later tiles are gone."""
    return _cut(geotiff(folder / "scene.tif", data), 0.6)


def geotiff_header(folder: Path, data: np.ndarray) -> Path:
    """A GeoTIFF that stops inside its header."""
    return _cut(geotiff(folder / "scene.tif", data), 0.002)


def envi_short(folder: Path, data: np.ndarray) -> Path:
    """An ENVI header whose data file lacks its last part."""
    header = utm_envi(folder, data)
    _cut(header.with_suffix(".img"), 0.7)
    return header


def netcdf_truncated(folder: Path, data: np.ndarray) -> Path:
    """An EMIT NetCDF-4 file cut short."""
    return _cut(emit_netcdf(folder / "scene.nc", data.astype(np.float32), None), 0.6)


def hdf5_chunk(folder: Path, data: np.ndarray) -> Path:
    """An HDF5 cube, compressed by chunks, whose last chunk is garbage."""
    path = folder / "scene.h5"
    with h5py.File(path, "w") as handle:
        dataset = handle.create_dataset("cube", data=data, chunks=(8, 8, 4), compression="gzip")
        last = dataset.id.get_chunk_info(dataset.id.get_num_chunks() - 1)
    raw = bytearray(path.read_bytes())
    raw[last.byte_offset : last.byte_offset + last.size] = b"\x5a" * last.size
    path.write_bytes(bytes(raw))
    return path


def npy_truncated(folder: Path, data: np.ndarray) -> Path:
    """A .npy file cut short."""
    np.save(folder / "scene.npy", data)
    return _cut(folder / "scene.npy", 0.6)


BROKEN: dict[str, tuple[Callable[[Path, np.ndarray], Path], str]] = {
    # name: (writer, what the one line says after the path)
    "geotiff-tail": (geotiff_tail, r"truncated or corrupt GeoTIFF \(reading rows \d+:\d+, "),
    "geotiff-header": (geotiff_header, r"not a readable GeoTIFF file \("),
    "envi-short": (envi_short, r"data file scene\.img has \d+ bytes but the header .* needs "),
    "netcdf": (netcdf_truncated, r"truncated or corrupt NetCDF-4 file \(.*truncated file"),
    "hdf5-chunk": (hdf5_chunk, r"truncated or corrupt HDF5 \(reading rows \d+:\d+, "),
    "npy": (npy_truncated, r"not a readable \.npy file \(mmap length is greater than file size"),
}


def _scene(height: int, width: int, seed: int = 0) -> np.ndarray:
    """A BANDS-band cube of raw DNs: small files that still span several map tiles."""
    rng = np.random.default_rng(seed)
    return rng.integers(100, 4000, (height, width, BANDS), dtype=np.uint16)


@pytest.fixture(scope="module")
def bundle(tmp_path_factory) -> Path:
    """An untrained spectral-mean model on BANDS bands, saved: mapping needs no training."""
    folder = tmp_path_factory.mktemp("broken") / "bundle"
    preprocessor = Preprocessor.fit(_scene(16, 16).reshape(-1, BANDS), n_components=3)
    classifier = Classifier(SpectralMeanMLP(3, 3), preprocessor, ["a", "b", "c"], window=4)
    return classifier.save(folder)


def _one_error_line(err: str, path: Path, reason: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith(f"s3fn: error: {path}: "), lines[0]
    assert re.search(reason, lines[0]), lines[0]
    return lines[0]


@pytest.mark.parametrize("name", BROKEN)
def test_predict_refuses_a_broken_cube_and_writes_nothing_for_it(name, bundle, tmp_path, capsys):
    write, reason = BROKEN[name]
    (tmp_path / "in").mkdir()
    cube = write(tmp_path / "in", _scene(48, 40))
    out = tmp_path / "out"
    mapped = ["predict", str(bundle), str(cube), "--map", "--probabilities", "--tile", "8"]
    assert main([*mapped, "--out", str(out), "--quiet"]) == 1
    line = _one_error_line(capsys.readouterr().err, cube, reason)
    if name in ("geotiff-tail", "hdf5-chunk"):  # the first tiles were read and written
        assert not re.search(r"reading rows 0:\d+, columns 0:", line)
    assert sorted(p.name for p in out.iterdir()) == []  # no map, temporaries or preview
    assert main(["predict", str(bundle), str(cube), "--out", str(out), "--quiet"]) == 1
    _one_error_line(capsys.readouterr().err, cube, reason)
    assert sorted(p.name for p in out.iterdir()) == []  # no predictions.csv


@pytest.mark.parametrize("name", BROKEN)
def test_training_refuses_a_broken_image_naming_it(name, tmp_path, capsys):
    write, reason = BROKEN[name]
    data = object_folder(tmp_path / "data")
    image = write(data / "dark", _scene(20, 20))
    run = tmp_path / "run"
    assert main(["train", "--data", str(data), "--stage", "cnn", "--out", str(run), *TINY]) == 1
    _one_error_line(capsys.readouterr().err, image, reason)
    assert not run.exists()  # the folder this run created, config and split too


def test_a_tile_past_the_damage_names_the_file_and_write_map_leaves_nothing(bundle, tmp_path):
    cube = geotiff_tail(tmp_path, _scene(48, 40))
    with open_source(cube) as source:
        assert source.read(slice(0, 16), slice(0, 16)).shape == (16, 16, BANDS)
        message = (
            f"{cube}: truncated or corrupt GeoTIFF (reading rows 32:48, columns 0:16: "
            "TIFFReadEncodedTile:Read error"
        )
        with pytest.raises(S3FNDataError, match=f"^{re.escape(message)}"):
            source.read(slice(32, 48), slice(0, 16))
        classifier = Classifier.load(bundle)
        with pytest.raises(S3FNDataError, match=re.escape(f"{cube}: truncated or corrupt")):
            classifier.write_map(source, tmp_path / "map.tif", tile=8)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["scene.tif"]


def test_a_truncated_geotiff_is_one_line_from_a_real_process(bundle, tmp_path):
    cube = geotiff_tail(tmp_path, _scene(48, 40))
    out = tmp_path / "out"
    result = s3fn("predict", str(bundle), str(cube), "--map", "--out", str(out), "--quiet")
    assert result.returncode == 1
    _one_error_line(result.stderr, cube, BROKEN["geotiff-tail"][1])
    assert "Traceback" not in result.stderr and "Read failed" not in result.stderr
    assert list(out.iterdir()) == []


def test_tiles_shared_by_torchrun_leave_no_scratch_for_a_broken_cube(bundle, tmp_path):
    cube = geotiff_tail(tmp_path, _scene(48, 40))
    out = tmp_path / "out"
    launch = [str(Path(sys.executable).with_name("torchrun")), "--nproc-per-node", "2"]
    predict = ["predict", str(bundle), str(cube), "--map", "--tile", "8", "--out", str(out)]
    result = subprocess.run(
        [*launch, "--master-port", str(free_port()), "-m", "s3fn", *predict, "--quiet"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode != 0
    assert f"s3fn: error: {cube}: truncated or corrupt GeoTIFF (reading rows" in result.stderr
    assert list(out.iterdir()) == []
