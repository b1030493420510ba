"""The built-in datasets: real spectra, exact class names, layout, caching and determinism."""

from __future__ import annotations

import hashlib
import shutil

import numpy as np
import pytest

from s3fn.cache_dir import cache_root
from s3fn.data import ObjectDataset, S3FNDataError, SceneDataset, builtin, valid_origins
from s3fn.data.spectral_library import load_library

CLASS_NAMES = [
    "soil",
    "green vegetation",
    "asphalt",
    "composition shingle",
    "concrete",
    "paint",
    "wood",
    "plant litter",
]


@pytest.fixture(scope="session")
def cache(tmp_path_factory):
    root = tmp_path_factory.mktemp("s3fn-cache")
    yield root
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def materials(cache):
    return builtin.load("materials", seed=0, cache_dir=cache)


def _digest(folder):
    files = sorted(p for p in folder.rglob("*") if p.is_file())
    return {
        p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest() for p in files
    }


def test_library_groups_real_spectra_into_the_eight_classes():
    library = load_library()
    assert list(library.spectra) == CLASS_NAMES
    assert all(len(s) >= 20 for s in library.spectra.values())
    assert len(library.spectra["soil"]) == 4194 and len(library.spectra["plant litter"]) == 77
    np.testing.assert_allclose(library.wavelengths[[0, -1]], [400.0, 2450.0])
    assert len(library.wavelengths) == 180


def test_object_dataset_layout(materials):
    assert isinstance(materials, ObjectDataset)
    assert materials.class_names == CLASS_NAMES
    assert len(materials) == 8 * builtin.IMAGES_PER_CLASS
    np.testing.assert_array_equal(np.bincount(materials.labels), [builtin.IMAGES_PER_CLASS] * 8)
    for index in (0, 40, len(materials) - 1):
        sample = materials[index]
        assert sample.image_id.startswith(CLASS_NAMES[sample.label] + "/")
        assert sample.cube.n_bands == 180 and 48 <= sample.cube.shape[0] <= 60
        np.testing.assert_allclose(sample.cube.wavelengths[[0, 95, 96]], [400, 1350, 1460])
        assert (sample.cube.data[~sample.mask] == 0).all()
        assert 0.4 < sample.mask.mean() < 0.95
        assert len(valid_origins(sample.mask, 32)) >= 16
        assert 0.0 < sample.cube.data[sample.mask].mean() < 1.0


def test_images_carry_the_materials_spectral_signatures(materials):
    def mean_spectrum(label):
        index = int(np.flatnonzero(materials.labels == label)[0])
        sample = materials[index]
        return sample.cube.data[sample.mask].mean(axis=0)

    wavelengths = materials[0].cube.wavelengths
    red, nir = np.argmin(abs(wavelengths - 670)), np.argmin(abs(wavelengths - 850))
    vegetation = mean_spectrum(CLASS_NAMES.index("green vegetation"))
    asphalt = mean_spectrum(CLASS_NAMES.index("asphalt"))
    assert vegetation[nir] > 3 * vegetation[red]  # the red edge of green leaves
    assert asphalt[nir] < 1.6 * asphalt[red]  # dark, flat asphalt


def test_scene_dataset(cache):
    scene = builtin.load("materials-scene", seed=0, cache_dir=cache)
    assert isinstance(scene, SceneDataset)
    assert scene.cube.shape == (builtin.SCENE_SIZE, builtin.SCENE_SIZE, 180)
    assert scene.class_names == CLASS_NAMES
    counts = scene.class_counts()
    assert all(n > 200 for n in counts.values())
    assert 0.2 < (scene.labels == 0).mean() < 0.6


def test_generation_is_deterministic_by_seed_and_cached(cache, materials, tmp_path):
    folder = cache / "builtin" / f"materials-v{builtin.VERSION}-seed0"
    stamp = (folder / "complete.json").stat().st_mtime_ns
    builtin.load("materials", seed=0, cache_dir=cache)
    assert (folder / "complete.json").stat().st_mtime_ns == stamp  # reused, not regenerated
    again = builtin.generate("materials", tmp_path / "again", seed=0)
    assert _digest(again) == _digest(folder)
    shutil.rmtree(again)
    scene0 = builtin.generate("materials-scene", tmp_path / "s0", seed=0)
    scene1 = builtin.generate("materials-scene", tmp_path / "s1", seed=1)
    assert _digest(scene0) == _digest(
        cache / "builtin" / f"materials-scene-v{builtin.VERSION}-seed0"
    )
    assert _digest(scene0)["scene.img"] != _digest(scene1)["scene.img"]


def test_cache_folder_from_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("S3FN_CACHE", str(tmp_path / "env-cache"))
    assert cache_root() == tmp_path / "env-cache"
    monkeypatch.delenv("S3FN_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_root() == tmp_path / "xdg" / "s3fn"


def test_unknown_name():
    with pytest.raises(S3FNDataError, match="built-in dataset 'pavia': expected one of materials"):
        builtin.load("pavia")
