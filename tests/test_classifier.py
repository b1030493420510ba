"""Classifier: training from a folder, the bundle's save -> load round trip, inference on raw
cubes, and the one-line refusals of bad input."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from s3fn import __version__
from s3fn.data import (
    Cube,
    ObjectDataset,
    Preprocessor,
    S3FNDataError,
    SceneDataset,
    split_objects,
    split_scene,
)
from s3fn.inference import Classifier
from s3fn.models import SpectralMeanMLP
from s3fn.train import TrainSettings, train_classifier

CLASSES = ["dark", "mid", "bright"]
BANDS = 6
# The network itself is under test here, kept whatever the linear pixel model scores.
FAST = {"epochs": 2, "semantic_epochs": 2, "batch_size": 16, "compare_linear": False}
ARCH = {"window": 8, "padding": 1, "channels": [2, 4, 4], "n_components": 4}


def disc(size: int, level: float, rng: np.random.Generator) -> np.ndarray:
    """A disc-shaped object on a zero background, spectra sloped by class level."""
    rows, cols = np.mgrid[0:size, 0:size] - (size - 1) / 2
    inside = rows**2 + cols**2 <= (size / 2 - 0.5) ** 2
    slope = np.linspace(1.0 - level, 1.0 + level, BANDS)
    values = level * slope + 0.05 * rng.standard_normal((size, size, BANDS))
    return (np.abs(values) * inside[..., None]).astype(np.float32)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> ObjectDataset:
    root = tmp_path_factory.mktemp("objects")
    rng = np.random.default_rng(0)
    for k, name in enumerate(CLASSES):
        (root / name).mkdir()
        for i in range(5):
            np.save(root / name / f"{name}_{i}.npy", disc(18, 0.2 + 0.3 * k, rng))
    return ObjectDataset.from_folder(root, class_names=CLASSES)


@pytest.fixture(scope="module")
def split(dataset):
    return split_objects(dataset.labels, dataset.class_names, train=3, val=1, seed=0)


@pytest.fixture(scope="module")
def s3fn_classifier(dataset, split) -> Classifier:
    embeddings = torch.tensor([[1.0, 0.0, 0.2], [0.0, 1.0, 0.2], [0.3, 0.3, 1.0]])
    settings = TrainSettings(
        windows_per_image=6, temperature="learnable", init_scale=5.0, **FAST, **ARCH
    )
    return train_classifier(dataset, split, settings=settings, class_embeddings=embeddings)


def test_fit_trains_both_stages_and_records_them(s3fn_classifier, split):
    info = s3fn_classifier.info
    assert info["model"] == "two-stage" and info["stages"] == ["cnn", "semantic"]
    assert [len(info["histories"][s]) for s in ("cnn", "semantic")] == [2, 2]
    assert s3fn_classifier.window == (8, 8) and s3fn_classifier.n_bands == BANDS
    assert s3fn_classifier.preprocessor.n_components == 4


def test_save_load_round_trip_gives_identical_outputs(s3fn_classifier, dataset, split, tmp_path):
    folder = s3fn_classifier.save(tmp_path / "bundle")
    assert sorted(p.name for p in folder.iterdir()) == ["classifier.json", "model.safetensors"]
    loaded = Classifier.load(folder, device="cpu")
    sample = dataset[int(split.test[0])]
    before, after = s3fn_classifier.predict_image(sample.cube), loaded.predict_image(sample.cube)
    assert before.label == after.label and before.index == after.index
    np.testing.assert_array_equal(before.probabilities, after.probabilities)
    np.testing.assert_array_equal(before.votes, after.votes)
    np.testing.assert_array_equal(before.origins, after.origins)
    np.testing.assert_array_equal(
        s3fn_classifier.predict_map(sample.cube), loaded.predict_map(sample.cube)
    )
    for name, tensor in s3fn_classifier.model.state_dict().items():
        assert torch.equal(tensor, loaded.model.state_dict()[name]), name
    assert torch.equal(s3fn_classifier.model.class_embeddings, loaded.model.class_embeddings)


def test_bundle_json_holds_everything_needed(s3fn_classifier, tmp_path):
    config = json.loads((s3fn_classifier.save(tmp_path) / "classifier.json").read_text())
    assert config["format"] == "s3fn.classifier" and config["s3fn_version"] == __version__
    assert config["class_names"] == CLASSES
    assert np.array(config["class_embeddings"]).shape == (3, 3)
    assert config["model"]["type"] == "S3FN" and config["model"]["temperature"] == "learnable"
    assert config["model"]["backbone"]["in_bands"] == 4
    assert config["preprocessor"]["format"] == "s3fn.preprocessor"
    assert (config["window"], config["n_windows"], config["voting"]) == ([8, 8], 6, "majority")
    assert config["mask_threshold"] == 0.0


def test_predict_image_is_deterministic_and_inside_the_mask(s3fn_classifier, dataset):
    sample = dataset[0]
    first, second = (s3fn_classifier.predict_image(sample.cube) for _ in range(2))
    np.testing.assert_array_equal(first.probabilities, second.probabilities)
    assert first.probabilities.shape == (3,) and first.probabilities.sum() == pytest.approx(1)
    assert first.votes.sum() == 6 and first.label == CLASSES[first.index]
    for r, c in first.origins:
        assert sample.mask[r : r + 8, c : c + 8].all()


def test_predict_map_covers_every_pixel(s3fn_classifier, dataset):
    cube = dataset[0].cube
    labels, probabilities = s3fn_classifier.predict_map(cube, return_probabilities=True)
    assert labels.shape == (18, 18) and probabilities.shape == (18, 18, 3)
    np.testing.assert_array_equal(labels, probabilities.argmax(axis=2))
    masked = s3fn_classifier.predict_map(cube, dataset[0].mask)
    assert (masked[~dataset[0].mask] == -1).all()
    np.testing.assert_array_equal(masked[dataset[0].mask], labels[dataset[0].mask])


def test_evaluate_on_the_test_images(s3fn_classifier, dataset, split):
    result = s3fn_classifier.evaluate(dataset, split.test)
    assert result.images.total == len(split.test)
    assert result.windows.total == 6 * len(split.test)
    assert 0.0 <= result.images.oa <= 1.0


def test_band_count_mismatch_names_both_numbers(s3fn_classifier):
    with pytest.raises(S3FNDataError, match="cube has 5 bands; this classifier was trained on 6"):
        s3fn_classifier.predict_image(np.ones((18, 18, 5), np.float32))
    with pytest.raises(S3FNDataError, match="cube has 7 bands; this classifier was trained on 6"):
        s3fn_classifier.predict_map(np.ones((18, 18, 7), np.float32))


def test_bad_cubes_get_one_line_errors(s3fn_classifier):
    bad = np.ones((18, 18, BANDS), np.float32)
    bad[2, 3, 1] = np.inf
    cases = [
        (bad, "1 Inf values"),
        (np.ones((18, BANDS), np.float32), "expected a 3-D HxWxB cube"),
        (np.zeros((18, 18, BANDS), np.float32), "mask of the 18x18 image is empty"),
        (np.ones((6, 6, BANDS), np.float32), "6x6 image is smaller than a 8x8 window"),
    ]
    for cube, message in cases:
        with pytest.raises(S3FNDataError, match=message) as info:
            s3fn_classifier.predict_image(cube)
        assert "\n" not in str(info.value)
    with pytest.raises(S3FNDataError, match="mask is \\(3, 3\\)"):
        s3fn_classifier.predict_image(np.ones((18, 18, BANDS), np.float32), np.ones((3, 3)))
    with pytest.raises(S3FNDataError, match="too small to reflect-pad"):
        s3fn_classifier.predict_map(np.ones((3, 3, BANDS), np.float32))


def test_an_object_smaller_than_the_window_is_classified_from_covering_windows(s3fn_classifier):
    strip = np.ones((18, 18, BANDS), np.float32) * (np.arange(18) < 5)[:, None, None]
    prediction = s3fn_classifier.predict_image(strip)
    rows = prediction.origins[:, 0]
    assert rows.max() <= 1  # each 8-row window keeps at least half of itself on the 5-row strip
    assert prediction.probabilities.sum() == pytest.approx(1.0, abs=1e-5)


def _smooth_cube(wavelengths: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A 10 x 10 cube whose pixels are smooth spectra (two broad Gaussians), at `wavelengths`."""
    centres, widths = rng.uniform(400, 500, (100, 2)), rng.uniform(60, 120, (100, 2))
    shape = np.exp(
        -0.5 * ((wavelengths[None, None, :] - centres[..., None]) / widths[..., None]) ** 2
    )
    return (0.1 + shape.sum(axis=1)).reshape(10, 10, -1).astype(np.float32)


def test_a_cube_from_other_bands_is_resampled_to_the_trained_ones():
    trained = np.arange(BANDS, dtype=np.float64) * 20 + 400  # 400..500 nm, 20 nm apart
    rng = np.random.default_rng(0)
    preprocessor = Preprocessor.fit(
        _smooth_cube(trained, np.random.default_rng(1)), n_components=3, wavelengths=trained
    )
    classifier = Classifier(SpectralMeanMLP(3, 3), preprocessor, CLASSES, window=4, n_windows=2)
    cube = _smooth_cube(trained, rng)
    finer = np.arange(380.0, 521.0, 2.0)  # another sensor: 2 nm bands over the same range
    resampled = classifier.predict_map(Cube(_smooth_cube(finer, np.random.default_rng(0)), finer))
    direct, probabilities = classifier.predict_map(Cube(cube, trained), return_probabilities=True)
    _, again = classifier.predict_map(
        Cube(_smooth_cube(finer, np.random.default_rng(0)), finer), return_probabilities=True
    )
    assert np.abs(again - probabilities).max() < 0.02
    sure = np.sort(probabilities, axis=2)[..., -1] - np.sort(probabilities, axis=2)[..., -2] > 0.05
    np.testing.assert_array_equal(resampled[sure], direct[sure])
    assert classifier.predict_image(Cube(cube, trained + 0.5)).probabilities.shape == (3,)


def test_bands_the_cube_cannot_cover_or_count_are_refused():
    trained = np.arange(BANDS, dtype=np.float64) * 20 + 400
    rng = np.random.default_rng(0)
    preprocessor = Preprocessor.fit(rng.random((50, BANDS)), n_components=3, wavelengths=trained)
    classifier = Classifier(SpectralMeanMLP(3, 3), preprocessor, CLASSES, window=4, n_windows=2)
    short = np.arange(400.0, 451.0, 5.0)
    with pytest.raises(S3FNDataError, match=r"predict_image: bands cover 400-450 nm; .* 4[67]\d"):
        classifier.predict_image(Cube(_smooth_cube(short, rng), short))
    with pytest.raises(S3FNDataError, match=r"cube has 4 bands; .* trained on 6 bands \(give"):
        classifier.predict_image(rng.random((10, 10, 4)).astype(np.float32))
    with pytest.raises(ValueError, match="model takes 3 bands but the preprocessor gives 4"):
        Classifier(
            SpectralMeanMLP(3, 3),
            Preprocessor.fit(rng.random((50, BANDS)), n_components=4),
            CLASSES,
            window=4,
        )


def test_resume_returns_the_finished_run(dataset, split, tmp_path):
    settings = TrainSettings(stage="cnn", windows_per_image=4, **FAST, **ARCH)
    first = train_classifier(dataset, split, settings=settings, workdir=tmp_path)
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == ["cnn.pt", "refit"]
    assert (tmp_path / "checkpoints" / "refit" / "cnn.pt").is_file()
    again = train_classifier(dataset, split, settings=settings, workdir=tmp_path, resume=True)
    assert again.info["histories"] == first.info["histories"]
    for name, tensor in first.model.state_dict().items():
        assert torch.equal(tensor, again.model.state_dict()[name])


def test_load_refuses_tampered_or_missing_files(s3fn_classifier, tmp_path):
    folder = s3fn_classifier.save(tmp_path / "b")
    weights = folder / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-1] + b"\0")
    with pytest.raises(S3FNDataError, match="SHA-256 differs"):
        Classifier.load(folder)
    with pytest.raises(FileNotFoundError, match=r"classifier\.json: not found"):
        Classifier.load(tmp_path / "nowhere")
    config = json.loads((folder / "classifier.json").read_text())
    del config["window"]
    (folder / "classifier.json").write_text(json.dumps(config))
    with pytest.raises(S3FNDataError, match="field 'window' is missing"):
        Classifier.load(folder)


def test_plain_cnn_and_spectral_mean_baselines(dataset, split, tmp_path):
    for model in ("cnn", "spectral-mean"):
        settings = TrainSettings(stage=model, windows_per_image=4, **FAST, **ARCH)
        classifier = train_classifier(dataset, split, settings=settings)
        loaded = Classifier.load(classifier.save(tmp_path / model))
        cube = dataset[0].cube
        np.testing.assert_array_equal(
            classifier.predict_image(cube).probabilities, loaded.predict_image(cube).probabilities
        )
        assert (
            json.loads((tmp_path / model / "classifier.json").read_text())["class_embeddings"]
            is None
        )


def test_fit_request_errors(dataset, split):
    with pytest.raises(ValueError, match="needs descriptions or class_embeddings"):
        train_classifier(dataset, split)
    with pytest.raises(ValueError, match="takes no descriptions"):
        train_classifier(dataset, split, {"dark": ["x"]}, TrainSettings(stage="cnn"))
    with pytest.raises(ValueError, match="expected 3 rows"):
        train_classifier(
            dataset, split, settings=TrainSettings(**ARCH), class_embeddings=torch.ones(2, 3)
        )
    with pytest.raises(ValueError, match="model 'nope'; expected one of two-stage, joint"):
        train_classifier(dataset, split, settings=TrainSettings(stage="nope"))


def test_scene_classifier_maps_and_scores_pixels():
    rng = np.random.default_rng(0)
    labels = np.zeros((32, 32), dtype=np.int64)
    labels[:, :16], labels[:, 16:] = 1, 2
    cube = np.where(labels[..., None] == 1, 0.2, 0.8) * np.linspace(0.8, 1.2, BANDS)
    cube = (cube + 0.02 * rng.standard_normal(cube.shape)).astype(np.float32)
    scene = SceneDataset(Cube(cube), labels, ["left", "right"])
    split = split_scene(labels, scene.class_names, 8, train=0.5, val=0.25, block_size=8, seed=0)
    settings = TrainSettings(
        stage="cnn", window=8, padding=1, channels=[2, 2, 2], n_components=4, **FAST
    )
    classifier = train_classifier(scene, split, settings=settings)
    assert classifier.kind == "scene"
    result = classifier.evaluate(scene, split.test)
    assert result.images is None and result.windows.total == len(split.test)
    label_map = classifier.predict_map(scene.cube)
    assert label_map.shape == (32, 32)
    test = split.test
    np.testing.assert_array_equal(
        label_map[test[:, 0], test[:, 1]], result.probabilities.argmax(axis=1)
    )
    with pytest.raises(ValueError, match="window=6, but the scene split was made for"):
        train_classifier(scene, split, settings=TrainSettings(stage="cnn", window=6))


def test_inference_imports_nothing_from_training():
    """A system that only predicts loads the inference package without the training code."""
    import subprocess
    import sys

    code = "import sys, s3fn.inference; print(sorted(m for m in sys.modules if 's3fn.train' in m))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
