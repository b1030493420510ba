"""Data-fitted defaults: what a first `s3fn train` on a user's small or raw data chooses.

The runs here cap the epochs (and the encoder is never needed: `--stage cnn`) only to keep the
suite fast; every data-dependent choice is left to the defaults.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest
import yaml

from s3fn.config import TrainConfig
from s3fn.data import S3FNDataError
from s3fn.data.defaults import (
    MIN_WINDOW,
    largest_square,
    object_window,
    scene_split,
    scene_window,
)
from s3fn.progress import Progress
from s3fn.train.run import train_run

FAST = {"stage": "cnn", "epochs": 2, "channels": [4, 8, 8], "quiet": None}
WATER_BANDS_NM = ((1350.0, 1460.0), (1790.0, 1960.0))


def _spectra(n_classes: int, wavelengths: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One smooth, distinct reflectance spectrum per class (n_classes x B)."""
    centres = rng.uniform(wavelengths[0], wavelengths[-1], (n_classes, 3))
    shapes = np.exp(-0.5 * ((wavelengths[None, None] - centres[..., None]) / 250.0) ** 2)
    return 0.1 + 0.4 * shapes.sum(axis=1) / 3


def _raw(reflectance: np.ndarray, wavelengths: np.ndarray, rng, dtype: str) -> np.ndarray:
    """Reflectance as a sensor delivers it: water-absorption bands that hold only noise, then
    scaled to `dtype` DNs (int16 with a dark offset, so values go negative)."""
    water = np.zeros(wavelengths.shape, bool)
    for lo, hi in WATER_BANDS_NM:
        water |= (wavelengths >= lo) & (wavelengths <= hi)
    cube = reflectance.copy()
    cube[..., water] = 0.02 * rng.standard_normal(cube[..., water].shape)
    if dtype == "uint16":
        return np.clip(cube * 10000, 0, 65535).astype(np.uint16)
    if dtype == "int16":
        return (cube * 10000 - 300).astype(np.int16)
    if dtype == "uint8":
        return np.clip(cube * 250, 0, 255).astype(np.uint8)
    return cube.astype(np.float32)


def _blob(size: int, rng: np.random.Generator) -> np.ndarray:
    """An irregular object mask about `size` px across, centred in a (size + 8)^2 image."""
    side = size + 8
    rows, cols = np.mgrid[0:side, 0:side] - (side - 1) / 2
    theta = np.arctan2(rows, cols)
    radius = (
        size
        / 2
        * (1 + sum(rng.uniform(0, 0.15) * np.cos(k * theta + rng.uniform(0, 6)) for k in (2, 3, 5)))
    )
    return np.hypot(rows, cols) <= radius


def _objects(root: Path, per_class: int, size: int, dtype: str, bands: int = 120) -> Path:
    """root/<class>/<image>.npy + <image>_mask.npy: tiny irregular objects of raw radiometry."""
    rng = np.random.default_rng(0)
    wavelengths = np.linspace(400, 2500, bands)
    spectra = _spectra(3, wavelengths, rng)
    for k, name in enumerate(("alpha", "beta", "gamma")):
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            mask = _blob(size, rng)
            pixels = spectra[k] * rng.uniform(0.8, 1.2, (*mask.shape, 1))
            pixels += 0.01 * rng.standard_normal(pixels.shape)
            cube = _raw(pixels * mask[..., None], wavelengths, rng, dtype)
            np.save(root / name / f"{name}{i}.npy", cube)
            np.save(root / name / f"{name}{i}_mask.npy", mask.astype(np.uint8))
    return root


def _scene(folder: Path, size: int = 50, per_class: int = 20, dtype: str = "float32") -> Path:
    """A size x size scene of three material fields, `per_class` labelled pixels per class
    spread over each field, saved as cube.npy + labels.npy."""
    rng = np.random.default_rng(1)
    wavelengths = np.linspace(400, 2500, 100)
    spectra = _spectra(3, wavelengths, rng)
    field = np.minimum(np.arange(size)[None, :] * 3 // size, 2).repeat(size, axis=0)
    cube = spectra[field] * rng.uniform(0.9, 1.1, (size, size, 1))
    cube += 0.01 * rng.standard_normal(cube.shape)
    labels = np.zeros((size, size), np.int32)
    for k in range(3):
        where = np.argwhere(field == k)
        chosen = where[rng.choice(len(where), per_class, replace=False)]
        labels[chosen[:, 0], chosen[:, 1]] = k + 1
    folder.mkdir(parents=True, exist_ok=True)
    np.save(folder / "cube.npy", _raw(cube, wavelengths, rng, dtype))
    np.save(folder / "labels.npy", labels)
    return folder


def _train(out: Path, **fields) -> dict:
    fields.pop("quiet", None)
    train_run(TrainConfig(**fields), out, resume=False, progress=Progress(quiet=True))
    return yaml.safe_load((out / "config.yaml").read_text())


def test_largest_square_matches_brute_force():
    rng = np.random.default_rng(0)
    for _ in range(20):
        mask = rng.random((9, 11)) < 0.8
        brute = max(
            (
                s
                for s in range(1, 10)
                for r in range(10 - s)
                for c in range(12 - s)
                if r + s <= 9 and c + s <= 11 and mask[r : r + s, c : c + s].all()
            ),
            default=0,
        )
        assert largest_square(mask) == brute


def test_object_window_follows_the_smallest_object():
    assert object_window([60, 40, 34]).value == 32
    assert object_window([60, 20]).value == 18
    assert object_window([60, 20], largest=16).value == 16
    assert object_window([9, 30]).value == MIN_WINDOW
    small = object_window([5])
    assert small.value == MIN_WINDOW and "may reach past its mask" in small.reason


def test_scene_window_and_blocks_fit_small_scenes():
    assert scene_window((144, 144)).value == 15
    assert scene_window((50, 50)).value == 7
    labels = np.zeros((50, 50), int)
    labels[:, :17], labels[:, 17:34], labels[:, 34:] = 1, 2, 3
    split, choice = scene_split(labels, ["a", "b", "c"], 7, train=0.6, val=0.2, seed=0)
    counts = split.class_counts()
    assert all(n > 0 for part in counts.values() for n in part.values())
    assert choice.value < 4 * 7 and "balance" in choice.reason


@pytest.mark.parametrize("dtype", ["uint16", "int16"])
def test_tiny_raw_objects_train_with_the_defaults(tmp_path, dtype):
    root = _objects(tmp_path / "data", per_class=3, size=12, dtype=dtype)
    config = _train(tmp_path / "run", data=str(root), **FAST)
    assert config["window"] < 12
    assert config["n_components"] <= 30
    text = (tmp_path / "run" / "config.yaml").read_text()
    assert "# chosen from the data:" in text and "smallest training object" in text
    assert (tmp_path / "run" / "bundle" / "classifier.json").is_file()


def test_a_small_scene_gets_a_small_window_and_a_validation_part(tmp_path):
    folder = _scene(tmp_path / "scene", dtype="uint8")
    config = _train(
        tmp_path / "run",
        data=str(folder / "cube.npy"),
        labels=str(folder / "labels.npy"),
        classes=["a", "b", "c"],
        holdout="blocks",
        **FAST,
    )
    assert config["window"] == 7 and config["block_size"] < 28
    split = yaml.safe_load((tmp_path / "run" / "split.json").read_text())
    assert len(split["train"]) and len(split["val"]) and not split["test"]  # asked for none


def test_no_possible_validation_part_warns_and_still_stops(tmp_path):
    root = _objects(tmp_path / "data", per_class=2, size=16, dtype="float32")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        _train(tmp_path / "run", data=str(root), **{**FAST, "epochs": 40, "patience": 2})
    assert any("no validation part" in str(w.message) for w in caught)
    metrics = yaml.safe_load((tmp_path / "run" / "metrics.json").read_text())
    assert metrics is not None
    log = (tmp_path / "run" / "train.log").read_text()
    assert 0 < log.count("[cnn] epoch") < 40  # stopped on the training loss, before the cap


def test_a_saved_scene_split_is_remade_and_saves_the_same_recipe_again(tmp_path):
    from s3fn.data import SceneDataset
    from s3fn.data.defaults import make_split
    from s3fn.data.split_files import load_split, split_to_dict

    folder = _scene(tmp_path / "scene")
    scene = SceneDataset.from_files(folder / "cube.npy", folder / "labels.npy", ["a", "b", "c"])
    split, _ = make_split(scene, train=0.6, val=0.2, seed=3)
    saved = tmp_path / "split.json"
    saved.write_text(json.dumps(split_to_dict(scene, split)))
    again = load_split(scene, saved)
    for part in ("train", "val", "test"):
        np.testing.assert_array_equal(again.part(part), split.part(part))
    assert split_to_dict(scene, again) == json.loads(saved.read_text())  # reusable in turn
    hand_made = {**json.loads(saved.read_text()), "block_size": None}
    saved.write_text(json.dumps(hand_made))
    with pytest.raises(S3FNDataError, match="field 'block_size' is missing"):
        load_split(scene, saved)


def test_pooling_follows_the_components_when_they_are_given(tmp_path):
    root = _objects(tmp_path / "data", per_class=4, size=40, dtype="float32", bands=40)
    config = _train(tmp_path / "run", data=str(root), n_components=10, **FAST)
    assert config["window"] == 16
    text = (tmp_path / "run" / "config.yaml").read_text()
    assert "16x16 windows of 10 components are too small for the two stride-2 pools" in text
