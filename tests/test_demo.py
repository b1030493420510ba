"""The demo's real code path on the built-in data, with a tiny training budget."""

from __future__ import annotations

import json

import numpy as np

from s3fn.data import builtin
from s3fn.demo import (
    CNN,
    DEFAULT,
    FULL,
    LINEAR,
    METHODS,
    QUICK,
    DemoSettings,
    _verdict,
    demo_split,
    run_demo,
)
from s3fn.progress import Progress


def test_tiny_demo_trains_three_methods_on_both_tasks_and_writes_the_reports(tmp_path):
    settings = DemoSettings(
        seeds=(0,),
        train=8,
        val=6,
        points=12,
        windows_per_image=2,
        epochs=1,
        semantic_epochs=1,
        batch_size=32,
    )
    result = run_demo(tmp_path, settings, Progress(quiet=True))
    objects, scene = result.tasks["objects"], result.tasks["scene"]
    assert list(objects.evaluations) == list(METHODS) == list(scene.evaluations)
    for evaluation in objects.evaluations.values():
        assert evaluation.images.total == 8 * 2  # 2 test images in each of the 8 classes
    truth = builtin.load("materials-scene").labels
    east = demo_split(builtin.load("materials-scene"), settings, 0).test
    for evaluation in scene.evaluations.values():
        assert evaluation.images is None and evaluation.windows.total == len(east)
    assert (east[:, 1] > 0.45 * truth.shape[1]).all()
    for task in (objects, scene):
        assert task.table.splitlines()[0].startswith("| method |")
        assert task.verdict.split(" ")[1] in {"default", "plain", "linear"}
        assert task.verdict in result.text
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert set(metrics["tasks"]) == {"objects", "scene"}
    assert set(metrics["tasks"]["scene"]["methods"]) == set(METHODS)
    assert metrics["tasks"]["objects"]["default_kept"]["0"]["model"] in {"two-stage", "linear"}
    assert (tmp_path / "scene" / "scene_map.png").is_file()
    assert (tmp_path / "objects" / "bundle" / "model.safetensors").is_file()
    assert result.text in (tmp_path / "report.md").read_text()


def test_scene_split_labels_a_few_points_per_class_on_the_west_and_scores_the_east():
    scene = builtin.load("materials-scene")
    split = demo_split(scene, DemoSettings(points=30), seed=3)
    trained = split.final_training()
    counts = np.bincount(scene.labels[trained[:, 0], trained[:, 1]], minlength=9)[1:]
    assert (counts <= 30).all() and counts.sum() >= 0.85 * 30 * 8
    assert trained[:, 1].max() < round(0.45 * scene.labels.shape[1]) <= split.test[:, 1].min()
    assert len(split.test) == int((split.labels[:, 70:] > 0).sum())


def test_quick_is_a_smaller_budget_than_the_default():
    assert QUICK.epochs < FULL.epochs and QUICK.windows_per_image < FULL.windows_per_image
    assert len(QUICK.seeds) < len(FULL.seeds)


def kept(model: str, network: float, linear: float) -> dict:
    return {"model": model, "validation_oa": {"network": network, "linear": linear}}


def test_the_verdict_names_the_winner_and_what_the_default_kept_on_each_seed():
    level = _verdict({DEFAULT: 80.0, CNN: 70.0, LINEAR: 79.8}, [kept("linear", 0.7, 0.9)] * 2)
    assert level.startswith("S3FN's default is level with the best (80.0 against 79.8).")
    assert "kept the linear pixel model on every seed" in level
    assert "network scored 70.0 against the linear model's 90.0" in level
    misled = _verdict(
        {DEFAULT: 60.0, CNN: 62.0, LINEAR: 70.0},
        [kept("two-stage", 0.9, 0.8), kept("two-stage", 0.8, 0.7)],
    )
    assert misled.startswith("The linear pixel model wins (70.0 against the default's 60.0).")
    assert "kept the network on every seed" in misled and "carries over better" in misled
    mixed = _verdict(
        {DEFAULT: 75.0, CNN: 70.0, LINEAR: 78.0},
        [kept("two-stage", 0.9, 0.8), kept("linear", 0.7, 0.8)],
    )
    assert "the network on 1 of 2 seeds" in mixed and "went the other way" in mixed
    wins = _verdict({DEFAULT: 90.0, CNN: 80.0, LINEAR: 85.0}, [kept("two-stage", 0.9, 0.8)])
    assert wins.startswith("S3FN's default wins (90.0).")
