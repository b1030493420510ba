"""report.md and its PNGs: real images of the right kind, and the tables in the Markdown."""

from __future__ import annotations

import numpy as np
import pytest
from matplotlib.image import imread

from s3fn.evaluate import Report
from s3fn.evaluate.predict import Evaluation
from s3fn.report import SceneMaps, label_map, training_curves, write_report

NAMES = ["soil", "grass", "road"]


def evaluation(seed: int, images: bool = True) -> Evaluation:
    rng = np.random.default_rng(seed)
    truth = np.repeat(np.arange(3), 10)
    guess = np.where(rng.random(30) < 0.8, truth, rng.integers(0, 3, 30))
    windows = Report.from_labels(truth, guess, NAMES)
    image_report = Report.from_labels(truth[::5], guess[::5], NAMES) if images else None
    return Evaluation(windows, image_report, np.zeros((30, 3)), truth, None)


def history(epochs: int) -> list[dict]:
    return [
        {"epoch": e, "train_loss": 1 / e, "val_loss": 1.2 / e, "val_accuracy": 1 - 0.5 / e}
        for e in range(1, epochs + 1)
    ]


def pixels(path) -> np.ndarray:
    image = imread(path)
    assert image.ndim == 3 and image.shape[0] > 200 and image.shape[1] > 300
    assert image[..., :3].std() > 0.05  # not a blank canvas
    return image


def test_report_with_several_methods(tmp_path):
    results = {"S3FN": evaluation(0), "3D-CNN": evaluation(1)}
    histories = {"S3FN": {"cnn": history(5), "semantic": history(3)}, "3D-CNN": {"cnn": history(5)}}
    path = write_report(
        tmp_path, results, title="Test run", histories=histories, config={"epochs": 5}
    )
    text = path.read_text()
    assert text.startswith("# Test run")
    assert "| S3FN | image |" in text and "| 3D-CNN | window |" in text
    assert "| grass |" in text and '"epochs": 5' in text
    for name in ("curves.png", "f1.png", "confusion_0_s3fn.png", "confusion_1_3d-cnn.png"):
        assert f"]({name})" in text
        pixels(tmp_path / name)


def test_scene_report_draws_both_maps_with_a_legend(tmp_path):
    truth = np.zeros((30, 40), dtype=np.int64)
    truth[5:25, 5:15], truth[5:25, 15:25], truth[5:25, 25:35] = 1, 2, 3
    predicted = np.where(truth > 0, truth - 1, -1)
    predicted[10:12, 10:30] = 0
    path = write_report(
        tmp_path,
        {"S3FN": evaluation(2, images=False)},
        title="Scene",
        scene=SceneMaps(predicted, truth),
    )
    assert "](scene_map.png)" in path.read_text()
    assert "| S3FN | image |" not in path.read_text()
    image = pixels(tmp_path / "scene_map.png")
    assert image.shape[1] > 1.5 * image.shape[0]  # two maps side by side
    pixels(label_map(predicted, NAMES, tmp_path / "map.png", "predicted"))


def test_curves_need_records_and_reports_need_results(tmp_path):
    with pytest.raises(ValueError, match="no epoch records"):
        training_curves({"S3FN": {"cnn": []}}, tmp_path / "c.png")
    with pytest.raises(ValueError, match="no results"):
        write_report(tmp_path, {}, title="empty")
