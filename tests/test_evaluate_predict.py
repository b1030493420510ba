"""evaluate() on window datasets, per-pixel scene scores, and mean ± std over seeds."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import TensorDataset

from s3fn.evaluate import evaluate, markdown_table, predict_probabilities, run_seeds, score_map
from s3fn.evaluate.metrics import Report


class MeanSign(nn.Module):
    """Class 1 when a window's mean is positive: predictable logits for the tests."""

    def __init__(self) -> None:
        super().__init__()
        self.unused = nn.Parameter(torch.zeros(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        m = x.flatten(1).mean(1)
        return torch.stack([-m, m], dim=1) * 10


def test_window_and_image_level_results():
    # image 0 (class 0): windows -1, -1, +1  -> majority 0
    # image 1 (class 1): windows +1, -1, -1  -> majority 0 (wrong)
    means = torch.tensor([-1.0, -1.0, 1.0, 1.0, -1.0, -1.0])
    x = means[:, None, None, None].expand(-1, 2, 2, 2).clone()
    y = torch.tensor([0, 0, 0, 1, 1, 1])
    data = TensorDataset(x, y)
    data.image_index = np.array([0, 0, 0, 1, 1, 1])
    result = evaluate(MeanSign(), data, class_names=["neg", "pos"], batch_size=4)
    assert result.windows.oa == pytest.approx(3 / 6)
    np.testing.assert_array_equal(result.votes.labels, [0, 0])
    assert result.images.oa == pytest.approx(0.5)
    np.testing.assert_array_equal(result.images.confusion, [[1, 0], [1, 0]])
    assert result.scalars()["image_oa"] == 0.5 and "window_kappa" in result.scalars()
    plain = evaluate(MeanSign(), TensorDataset(x, y))
    assert plain.images is None and plain.windows.class_names == ["0", "1"]


def test_image_ids_from_the_items():
    x = torch.tensor([1.0, 1.0, -1.0])[:, None, None, None].expand(-1, 1, 1, 1)
    items = [
        (x[i], int(label), image) for i, (label, image) in enumerate([(1, "a"), (1, "a"), (0, "b")])
    ]
    result = evaluate(MeanSign(), items, voting="mean-prob")
    assert result.images.oa == 1.0
    np.testing.assert_array_equal(result.votes.groups, ["a", "b"])


def test_predict_probabilities_are_softmax_rows():
    p = predict_probabilities(MeanSign(), torch.randn(5, 2, 2, 2), batch_size=2)
    assert p.shape == (5, 2)
    np.testing.assert_allclose(p.sum(axis=1), 1.0, rtol=1e-6)


def test_score_map_counts_labelled_pixels_only():
    labels = np.array([[0, 1, 1], [2, 2, 0]])
    predicted = np.array([[1, 0, 1], [1, 0, -1]])
    report = score_map(predicted, labels, ["a", "b"])
    # pixels: (0,1) a->a, (0,2) a->b, (1,0) b->b, (1,1) b->a
    np.testing.assert_array_equal(report.confusion, [[1, 1], [1, 1]])
    test_part = score_map(predicted, labels, ["a", "b"], pixels=np.array([[0, 1], [1, 0]]))
    assert test_part.oa == 1.0
    with pytest.raises(ValueError, match="unlabelled"):
        score_map(predicted, labels, ["a", "b"], pixels=np.array([[0, 0]]))


def test_run_seeds_mean_and_sample_std():
    summary = run_seeds(lambda seed: {"oa": 0.5 + 0.1 * seed, "kappa": 0.2}, [0, 1, 2])
    assert summary.seeds == [0, 1, 2]
    assert summary.mean("oa") == pytest.approx(0.6)
    assert summary.std("oa") == pytest.approx(0.1)  # sample std of 0.5, 0.6, 0.7
    assert summary.format("oa") == "60.00 ± 10.00"
    assert summary.to_dict()["std"]["kappa"] == pytest.approx(0.0, abs=1e-12)
    from_reports = run_seeds(lambda seed: Report.from_labels([0, 1], [0, seed % 2], 2), [0, 1])
    assert from_reports.values("oa").tolist() == [0.5, 1.0]
    table = markdown_table({"A": summary}, ["oa", "kappa"], headers=["OA", "kappa"])
    assert table.splitlines()[2] == "| A | 60.00 ± 10.00 | 20.00 ± 0.00 |"
    single = run_seeds(lambda seed: {"oa": 0.75}, [3])
    assert single.format("oa") == "75.00 (1 seed)"  # one run has no spread to report
    with pytest.raises(ValueError, match="no seeds"):
        run_seeds(lambda seed: {}, [])
