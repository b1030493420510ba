"""The `s3fn` subcommands in-process on tiny data: train, evaluate, predict, embed, resume."""

from __future__ import annotations

import json

import numpy as np
import pytest
import rasterio
import yaml

from s3fn.cli import build_parser, main
from s3fn.inference import Classifier
from tests.cli_helpers import BANDS, CLASSES, TINY, descriptions_file, object_folder

SUBCOMMANDS = ["demo", "train", "evaluate", "predict", "export", "describe", "embed", "info"]


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    """A tiny object dataset, its descriptions, their embeddings and one S3FN run."""
    root = tmp_path_factory.mktemp("cli")
    data = object_folder(root / "data")
    descriptions = descriptions_file(root / "descriptions.yaml")
    embeddings = root / "classes.safetensors"
    assert main(["embed", str(descriptions), "--out", str(embeddings), "--quiet"]) == 0
    run = root / "run"
    code = main(
        ["train", "--data", str(data), "--embeddings", str(embeddings), "--out", str(run), *TINY]
    )
    assert code == 0
    return {"root": root, "data": data, "descriptions": descriptions, "run": run}


@pytest.mark.parametrize("command", SUBCOMMANDS)
def test_every_subcommand_has_help(command, capsys):
    with pytest.raises(SystemExit) as exit_:
        build_parser().parse_args([command, "--help"])
    assert exit_.value.code == 0
    assert f"usage: s3fn {command}" in capsys.readouterr().out


def test_train_writes_the_whole_run_folder(workspace, capsys):
    run = workspace["run"]
    for name in ("config.yaml", "train.log", "split.json", "metrics.json", "report.md"):
        assert (run / name).is_file(), name
    assert (run / "bundle" / "classifier.json").is_file()
    assert (run / "checkpoints" / "cnn.pt").is_file()
    assert (run / "checkpoints" / "semantic.pt").is_file()
    assert not (run / "windows").exists()
    for png in ("curves.png", "f1.png"):
        assert (run / png).read_bytes()[:4] == b"\x89PNG"
    config = yaml.safe_load((run / "config.yaml").read_text())
    assert config["window"] == 8 and config["channels"] == [2, 4, 4]
    assert config["stage"] == "two-stage" and config["embeddings"].endswith(".safetensors")
    metrics = json.loads((run / "metrics.json").read_text())
    assert set(metrics["histories"]) == {"cnn", "semantic"}
    assert metrics["image"]["total"] == len(CLASSES)  # one test image per class
    assert "[cnn] epoch 2/2" in (run / "train.log").read_text()


def test_a_finished_run_is_never_overwritten_and_resumes(workspace, capsys):
    run = workspace["run"]
    args = ["train", "--data", str(workspace["data"]), "--stage", "cnn", *TINY]
    assert main([*args, "--out", str(run)]) == 1
    assert "already holds a run; pass --resume" in capsys.readouterr().err
    before = (run / "bundle" / "model.safetensors").read_bytes()
    assert main(["train", "--resume", str(run), "--quiet"]) == 0
    assert (run / "bundle" / "model.safetensors").read_bytes() == before
    assert f"run folder {run}" in capsys.readouterr().out


def test_evaluate_a_run_on_its_test_split_over_seeds(workspace, capsys):
    out = workspace["root"] / "evaluation"
    code = main(
        ["evaluate", str(workspace["run"]), "--data", str(workspace["data"]), "--seeds", "0", "1",
         "--out", str(out), "--quiet"]
    )  # fmt: skip
    assert code == 0
    printed = capsys.readouterr().out
    assert "| classifier |" in printed and str(out / "report.md") in printed
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["part"] == "test" and metrics["seeds"]["runs"][1]["seed"] == 1


def test_evaluate_a_bundle_on_all_images(workspace, capsys):
    bundle = workspace["run"] / "bundle"
    assert main(["evaluate", str(bundle), "--data", str(workspace["data"]), "--quiet"]) == 0
    metrics = json.loads((workspace["run"] / "evaluation" / "metrics.json").read_text())
    assert metrics["part"] == "all" and metrics["image"]["total"] == 4 * len(CLASSES)


@pytest.mark.filterwarnings("ignore::rasterio.errors.NotGeoreferencedWarning")
def test_predict_labels_and_maps(workspace, capsys):
    cubes = sorted(str(p) for p in (workspace["data"] / "bright").glob("*.npy"))[:2]
    out = workspace["root"] / "predictions"
    assert main(["predict", str(workspace["run"]), *cubes, "--out", str(out), "--quiet"]) == 0
    rows = (out / "predictions.csv").read_text().splitlines()
    assert rows[0] == "cube,label,probability" and len(rows) == 3
    assert rows[1].split(",")[1] in CLASSES
    args = ["predict", str(workspace["run"]), cubes[0], "--map", "--out", str(out)]
    assert main([*args, "--probabilities", "--tile", "7"]) == 0
    with rasterio.open(out / "bright_0_labels.tif") as stored:
        labels = stored.read(1).astype(int) - 1
    assert labels.shape == (20, 20) and labels.min() >= 0 and labels.max() < len(CLASSES)
    classifier = Classifier.load(workspace["run"] / "bundle")
    np.testing.assert_array_equal(labels, classifier.predict_map(np.load(cubes[0])))
    with rasterio.open(out / "bright_0_probabilities.tif") as stored:
        assert stored.count == len(CLASSES)
    preview = out / "bright_0_labels.png"
    assert preview.read_bytes()[:4] == b"\x89PNG"
    assert str(preview) in capsys.readouterr().out
    assert main([*args, "--format", "envi", "--quiet"]) == 0
    header = (out / "bright_0_labels.hdr").read_text()
    assert "ENVI Classification" in header and "bright" in header


def test_config_file_sets_options_and_flags_win(workspace, capsys):
    config = workspace["root"] / "run.toml"
    config.write_text('stage = "spectral-mean"\nepochs = 1\nseed = 3\nbatch-size = 4\n')
    run = workspace["root"] / "from-config"
    args = ["train", "--data", str(workspace["data"]), "--config", str(config)]
    assert main([*args, "--out", str(run), *TINY]) == 0
    used = yaml.safe_load((run / "config.yaml").read_text())
    assert used["stage"] == "spectral-mean" and used["seed"] == 3
    assert used["epochs"] == 2 and used["batch_size"] == 8  # the flags in TINY win
    assert "Spectral-mean MLP" in capsys.readouterr().out


def test_scene_training_draws_the_map_beside_the_ground_truth(tmp_path, capsys):
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(1, 4), 16)[None, :].repeat(48, axis=0)
    cube = (labels[..., None] * 0.2 + 0.05 * rng.standard_normal((48, 48, BANDS))).astype(
        np.float32
    )
    np.save(tmp_path / "scene.npy", cube)
    np.save(tmp_path / "labels.npy", labels)
    run = tmp_path / "run"
    code = main(
        ["train", "--data", str(tmp_path / "scene.npy"), "--labels", str(tmp_path / "labels.npy"),
         "--classes", *CLASSES, "--stage", "cnn", "--out", str(run), *TINY, "--window", "5",
         "--block-size", "8", "--train", "0.5", "--val", "0.2", "--epochs", "1"]
    )  # fmt: skip
    assert code == 0
    assert (run / "scene_map.png").read_bytes()[:4] == b"\x89PNG"
    assert "pixel-level OA" in capsys.readouterr().out
