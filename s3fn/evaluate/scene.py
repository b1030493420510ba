"""Scoring a predicted scene map per pixel against a ground-truth label map."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from s3fn.evaluate.metrics import Report


def score_map(
    predicted: np.ndarray,
    labels: np.ndarray,
    class_names: Sequence[str],
    *,
    pixels: np.ndarray | None = None,
) -> Report:
    """Per-pixel report of an H x W map of class indices (0..K-1) against an H x W label map
    (0 = unlabelled, k = class k - 1), on `pixels` (P x 2 rows, columns; e.g. a split's test
    part) or else on every labelled pixel."""
    predicted, labels = np.asarray(predicted), np.asarray(labels)
    if predicted.shape != labels.shape or predicted.ndim != 2:
        raise ValueError(
            f"score_map: predicted map {predicted.shape} and label map {labels.shape}; "
            "expected two H x W maps of the same shape"
        )
    if pixels is None:
        pixels = np.argwhere(labels > 0)
    pixels = np.asarray(pixels, dtype=np.int64).reshape(-1, 2)
    truth = labels[pixels[:, 0], pixels[:, 1]]
    if (truth <= 0).any():
        raise ValueError("score_map: some scored pixels are unlabelled (0) in the label map")
    guess = predicted[pixels[:, 0], pixels[:, 1]]
    return Report.from_labels(truth - 1, guess, class_names)
