"""Every labelled pixel counts: validation-only splits with buffers only where a window reaches
a held-out pixel, a refit on train + validation, the label counts a run records, the linear
pixel model beside the network, and scoring a run on separate labels."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from s3fn.data import S3FNDataError
from s3fn.data.splits import split_objects, split_scene, with_test_labels
from s3fn.data.windows import window_sums
from s3fn.models.linear import STRENGTHS, LinearPixel, SoftmaxRegression
from s3fn.train.pipeline import _label_counts
from tests.cli_helpers import s3fn

NAMES = ["a", "b", "c"]


def fields(size: int = 48, seed: int = 0) -> np.ndarray:
    """A label map of three vertical fields, most pixels labelled."""
    rng = np.random.default_rng(seed)
    labels = np.minimum(np.arange(size)[None, :] * 3 // size, 2).repeat(size, axis=0) + 1
    return np.where(rng.random((size, size)) < 0.8, labels, 0)


def test_the_default_scene_split_holds_out_validation_only_and_trains_every_clear_label():
    labels = fields()
    split = split_scene(labels, NAMES, 5, block_size=8, seed=1)
    assert len(split.test) == 0 and len(split.val) > 0
    held = np.zeros(labels.shape, dtype=bool)
    held[split.val[:, 0], split.val[:, 1]] = True
    clear = window_sums(held, (5, 5), centred=True) == 0
    expected = np.argwhere((labels > 0) & ~held & clear)
    np.testing.assert_array_equal(split.train, expected)  # no label dropped that need not be
    assert len(split.final_training()) == (labels > 0).sum()  # the refit trains on all


def test_a_test_part_only_when_asked_and_the_old_fractions_keep_their_meaning():
    labels = fields()
    asked = split_scene(labels, NAMES, 5, test=0.2, block_size=8, seed=1)
    old = split_scene(labels, NAMES, 5, train=0.6, val=0.2, block_size=8, seed=1)
    assert len(asked.test) > 0 and asked.fractions == (0.2, 0.2) == old.fractions
    with pytest.raises(S3FNDataError, match="something left to train on"):
        split_scene(labels, NAMES, 5, val=0.5, test=0.5)
    image_labels = np.repeat(np.arange(3), 10)
    objects = split_objects(image_labels, NAMES, val=2, seed=0)
    assert (len(objects.train), len(objects.val), len(objects.test)) == (24, 6, 0)
    legacy = split_objects(image_labels, NAMES, train=5, val=2, seed=0)
    assert (len(legacy.train), len(legacy.val), len(legacy.test)) == (15, 6, 9)
    np.testing.assert_array_equal(
        objects.final_training(), np.sort(np.concatenate([objects.train, objects.val]))
    )


def test_the_final_training_part_is_every_label_clear_of_the_test_part():
    labels = fields()
    split = split_scene(labels, NAMES, 5, test=0.2, block_size=8, seed=2)
    final = split.final_training()
    tested = np.zeros(labels.shape, dtype=bool)
    tested[split.test[:, 0], split.test[:, 1]] = True
    reach = window_sums(tested, (5, 5), centred=True)[final[:, 0], final[:, 1]]
    assert (reach == 0).all() and not tested[final[:, 0], final[:, 1]].any()
    as_set = {tuple(p) for p in final}
    assert {tuple(p) for p in np.concatenate([split.train, split.val])} <= as_set
    assert len(final) > len(split.train) + len(split.val)  # the validation buffer too


def test_separate_test_labels_become_the_test_part_with_their_buffer():
    labels = fields()
    test_map = np.zeros_like(labels)
    test_map[:, 40:] = 3
    split = with_test_labels(split_scene(labels, NAMES, 5, block_size=8), test_map, "east.npy")
    assert len(split.test) == 48 * 8 and (split.part_labels("test") == 2).all()
    assert split.train[:, 1].max() < 40 - 2  # no training window reaches column 40
    with pytest.raises(S3FNDataError, match=r"east\.npy: test label map of shape \(3, 3\)"):
        with_test_labels(split, np.ones((3, 3), int), "east.npy")
    with pytest.raises(S3FNDataError, match=r"east\.npy: no labelled pixel to score"):
        with_test_labels(split, np.zeros_like(labels), "east.npy")


def test_label_counts_leave_out_the_test_part_the_user_held_out():
    image_labels = np.repeat(np.arange(3), 10)
    objects = split_objects(image_labels, NAMES, val=2, test=3, seed=0)
    data = SimpleNamespace(class_names=NAMES)
    given, trained = _label_counts(data, objects, refitted=True)
    assert given.tolist() == [7, 7, 7] and trained.tolist() == [7, 7, 7]
    given, trained = _label_counts(data, objects, refitted=False)
    assert trained.tolist() == [5, 5, 5]
    labels = fields()
    scene = split_scene(labels, NAMES, 5, test=0.2, block_size=8, seed=2)
    given, trained = _label_counts(data, scene, refitted=True)
    assert given.sum() == (labels > 0).sum() - len(scene.test)
    assert trained.sum() == len(scene.final_training())


@pytest.mark.parametrize("strength", STRENGTHS)
def test_softmax_regression_reaches_the_optimum_of_its_objective(strength):
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 300)
    x = rng.normal(size=(300, 8)) + y[:, None] * np.linspace(0.5, 2.0, 8) + 5.0
    model = SoftmaxRegression.fit(x, y, 3, strength)
    weight = torch.from_numpy(model.weight).requires_grad_(True)
    bias = torch.from_numpy(model.bias).requires_grad_(True)
    loss = F.cross_entropy(torch.from_numpy(x) @ weight.T + bias, torch.from_numpy(y))
    loss = loss + weight.square().sum() / (2 * strength * len(y))
    loss.backward()
    assert float(weight.grad.abs().max()) < 1e-5 and float(bias.grad.abs().max()) < 1e-5
    assert ((x @ model.weight.T + model.bias).argmax(axis=1) == y).mean() > 0.9


@pytest.mark.parametrize("reduce", ["centre", "mean"])
def test_the_linear_pixel_model_reads_its_windows_and_runs_densely(reduce):
    from s3fn.inference.dense import dense_probabilities
    from s3fn.models import build_model

    torch.manual_seed(0)
    windows = torch.randn(200, 4, 5, 5)
    spectrum = windows[:, :, 2, 2] if reduce == "centre" else windows.mean(dim=(2, 3))
    labels = (spectrum[:, 0] > 0).long() + (spectrum[:, 1] > 0.5).long()
    model = LinearPixel(4, 3, reduce=reduce).fit_windows([(windows[:100], labels[:100])] * 2)
    expected = SoftmaxRegression.fit(
        torch.cat([spectrum[:100]] * 2).double().numpy(), torch.cat([labels[:100]] * 2), 3
    )
    torch.testing.assert_close(
        model(windows).double(),
        spectrum.double() @ torch.from_numpy(expected.weight).T + torch.from_numpy(expected.bias),
        rtol=1e-5,
        atol=1e-5,
    )
    planes = torch.randn(4, 12, 13)
    dense = dense_probabilities(model, planes, 5)
    cut = planes.unfold(1, 5, 1).unfold(2, 5, 1).permute(1, 2, 0, 3, 4).reshape(-1, 4, 5, 5)
    per_window = torch.softmax(model(cut), dim=1).reshape(8, 9, 3)
    torch.testing.assert_close(dense, per_window, rtol=1e-5, atol=1e-6)
    rebuilt = build_model(model.config())
    rebuilt.load_state_dict(model.state_dict())
    torch.testing.assert_close(rebuilt(windows), model(windows))
    with pytest.raises(ValueError, match="reduce='median'"):
        LinearPixel(4, 3, reduce="median")


def one_sided_scene(folder: Path) -> tuple[Path, Path, Path]:
    """A 40 x 40 scene of three fields labelled on its west side, and its east side's labels."""
    rng = np.random.default_rng(3)
    field = np.minimum(np.arange(40)[:, None] * 3 // 40, 2).repeat(40, axis=1)
    spectra = rng.uniform(0.1, 0.9, (3, 12))
    cube = spectra[field] * rng.uniform(0.9, 1.1, (40, 40, 1)) + 0.02 * rng.normal(
        size=(40, 40, 12)
    )
    labels = field + 1
    west, east = np.where(np.arange(40) < 18, labels, 0), np.where(np.arange(40) >= 22, labels, 0)
    folder.mkdir()
    paths = folder / "cube.npy", folder / "west.npy", folder / "east.npy"
    for path, array in zip(paths, (cube.astype(np.float32), west, east), strict=True):
        np.save(path, array)
    return paths


def test_a_scene_labelled_on_one_side_trains_on_its_labels_and_reports_the_baseline(tmp_path):
    cube, west, east = one_sided_scene(tmp_path / "scene")
    run = tmp_path / "run"
    args = ["--labels", str(west), "--classes", *NAMES, "--stage", "cnn", "--epochs", "2"]
    args += ["--channels", "2", "4", "4", "--quiet"]
    done = s3fn("train", "--data", str(cube), *args, "--out", str(run))
    assert done.returncode == 0, done.stderr
    metrics = json.loads((run / "metrics.json").read_text())
    labels = metrics["labels"]
    assert labels["given"] == int((np.load(west) > 0).sum())
    assert labels["trained"] >= 0.85 * labels["given"]
    assert f"{labels['trained']} of {labels['given']} labelled pixels" in done.stdout
    assert "trained the final model" in (run / "train.log").read_text()
    validation = metrics["validation"]
    assert set(validation) >= {"network", "linear", "network_kept"}
    tried = {float(c): oa for c, oa in validation["linear_strengths"].items()}
    assert set(tried) == set(STRENGTHS) and validation["linear_strength"] in STRENGTHS
    assert validation["linear"]["oa"] == tried[validation["linear_strength"]] == max(tried.values())
    assert json.loads((run / "split.json").read_text())["holdout"] == "fields"
    assert validation["units"] >= 3 and validation["confidence"] == 0.95
    assert validation["network_kept"] <= (validation["advantage_lower_bound"] > 0)
    assert metrics["refit"]["model"] == metrics["model"]
    kept = metrics["validation"]["network_kept"]
    held = "3D-CNN" if kept else "warning: the bundle holds the linear pixel model"
    assert f"{'the bundle holds ' if kept else ''}{held}" in done.stdout
    report = (run / "report.md").read_text()
    assert "| linear pixel model |" in report and "| 3D-CNN |" in report
    assert f"it has C={validation['linear_strength']}" in report
    assert metrics["scalars"] is None  # no test part asked for

    missing = s3fn("evaluate", str(run), "--quiet")
    assert missing.returncode == 1
    assert "the run holds no test part" in missing.stderr and "--labels FILE" in missing.stderr
    scored = s3fn("evaluate", str(run), "--labels", str(east), "--quiet")
    assert scored.returncode == 0, scored.stderr
    evaluation = json.loads((run / "evaluation" / "metrics.json").read_text())
    assert evaluation["window"]["total"] == int((np.load(east) > 0).sum())
    assert evaluation["part"] == "all"


def test_test_labels_are_scored_and_never_trained(tmp_path):
    cube, west, east = one_sided_scene(tmp_path / "scene")
    run = tmp_path / "run"
    args = ["--labels", str(west), "--test-labels", str(east), "--classes", *NAMES]
    args += ["--stage", "spectral-mean", "--epochs", "2", "--quiet"]
    done = s3fn("train", "--data", str(cube), *args, "--out", str(run))
    assert done.returncode == 0, done.stderr
    split = json.loads((run / "split.json").read_text())
    assert len(split["test"]) == int((np.load(east) > 0).sum())
    assert split["test_labels"] == str(east)
    assert "test pixel-level OA" in done.stdout
    again = s3fn("evaluate", str(run), "--quiet")
    assert again.returncode == 0, again.stderr
    assert json.loads((run / "evaluation" / "metrics.json").read_text())["part"] == "test"
