"""Metrics against a hand-made confusion matrix and the textbook formulas."""

from __future__ import annotations

import math

import numpy as np
import pytest

from s3fn.evaluate import Report, confusion_matrix

# 3 classes, 10 samples. Rows: true class, columns: predicted class.
#            pred 0  pred 1  pred 2
#  true 0       3       1       0      (4)
#  true 1       0       2       1      (3)
#  true 2       1       0       2      (3)
Y_TRUE = [0, 0, 0, 0, 1, 1, 1, 2, 2, 2]
Y_PRED = [0, 0, 0, 1, 1, 1, 2, 0, 2, 2]
HAND = np.array([[3, 1, 0], [0, 2, 1], [1, 0, 2]])


def test_confusion_matrix_matches_the_hand_count():
    np.testing.assert_array_equal(confusion_matrix(Y_TRUE, Y_PRED, 3), HAND)


def test_scalars_by_hand():
    report = Report.from_labels(Y_TRUE, Y_PRED, ["a", "b", "c"])
    assert report.oa == pytest.approx(7 / 10)
    recall = [3 / 4, 2 / 3, 2 / 3]
    precision = [3 / 4, 2 / 3, 2 / 3]
    np.testing.assert_allclose(report.recall, recall)
    np.testing.assert_allclose(report.precision, precision)
    np.testing.assert_allclose(
        report.f1, [2 * p * r / (p + r) for p, r in zip(precision, recall, strict=True)]
    )
    assert report.aa == pytest.approx(np.mean(recall))
    assert report.macro_f1 == pytest.approx(np.mean(report.f1))
    # kappa = (p_o - p_e) / (1 - p_e), p_e = sum_k row_k * col_k / n^2
    p_e = (4 * 4 + 3 * 3 + 3 * 3) / 100
    assert report.kappa == pytest.approx((0.7 - p_e) / (1 - p_e))
    np.testing.assert_array_equal(report.support, [4, 3, 3])


def test_absent_classes_are_left_out_of_the_averages():
    # class 2 never occurs in truth; class 1 is never predicted
    report = Report.from_labels([0, 0, 1, 1], [0, 2, 0, 0], 3)
    np.testing.assert_allclose(report.recall, [0.5, 0.0, 0.0])
    np.testing.assert_allclose(report.precision, [1 / 3, 0.0, 0.0])
    assert report.aa == pytest.approx(0.25)  # over classes 0 and 1
    assert report.macro_f1 == pytest.approx((2 * (1 / 3) * 0.5 / (1 / 3 + 0.5)) / 3)
    assert Report.from_labels([1, 1], [1, 1], 3).aa == 1.0


def test_kappa_extremes():
    assert Report.from_labels([0, 1, 2], [0, 1, 2], 3).kappa == pytest.approx(1.0)
    assert Report.from_labels([0, 1], [1, 0], 2).kappa == pytest.approx(-1.0)
    assert math.isnan(Report.from_labels([1, 1], [1, 1], 2).kappa)  # chance agreement is 1


def test_to_dict_and_summary():
    report = Report.from_labels(Y_TRUE, Y_PRED, ["a", "b", "c"])
    data = report.to_dict()
    assert data["confusion"] == HAND.tolist()
    assert data["per_class"]["a"]["support"] == 4
    assert set(report.scalars()) == {"oa", "aa", "kappa", "macro_f1"}
    text = report.summary()
    assert "OA 0.7000" in text and text.splitlines()[1].startswith("a ")


def test_bad_labels_are_refused():
    with pytest.raises(ValueError, match=r"true labels span 0..3; expected 0..2"):
        confusion_matrix([0, 3], [0, 1], 3)
    with pytest.raises(ValueError, match="2 true labels but 1 predicted"):
        confusion_matrix([0, 1], [0], 3)
