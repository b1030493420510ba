"""The demo's real code path on the built-in data, with a tiny training budget."""

from __future__ import annotations

import json

from s3fn.demo import FULL, METHODS, QUICK, DemoSettings, run_demo
from s3fn.progress import Progress


def test_tiny_demo_trains_three_methods_and_writes_the_report(tmp_path):
    settings = DemoSettings(
        seeds=(0,), train=8, val=6, windows_per_image=2, epochs=1, semantic_epochs=1, batch_size=32
    )
    result = run_demo(tmp_path, settings, Progress(quiet=True))
    assert list(result.evaluations) == list(METHODS)
    for evaluation in result.evaluations.values():
        assert evaluation.images.total == 8 * 2  # 2 test images in each of the 8 classes
    assert result.table.splitlines()[0].startswith("| method | image OA (%)")
    assert list(result.per_seed) == [0] and " (1 seed) |" in result.table
    assert (tmp_path / "report.md").is_file() and (
        tmp_path / "bundle" / "model.safetensors"
    ).is_file()
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert set(metrics["methods"]) == set(METHODS)
    assert metrics["methods"]["S3FN"]["runs"][0]["seed"] == 0
    assert metrics["histories_first_seed"]["S3FN"]["semantic"]
    assert {p.name for p in result.files} >= {"curves.png", "f1.png", "report.md"}


def test_quick_is_a_smaller_budget_than_the_default():
    assert QUICK.epochs < FULL.epochs and QUICK.windows_per_image < FULL.windows_per_image
    assert len(QUICK.seeds) < len(FULL.seeds)
