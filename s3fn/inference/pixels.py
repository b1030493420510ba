"""Per-window classification of chosen pixels: the window centred on each, reflect-padded."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from torch import nn

from s3fn.data.errors import S3FNDataError
from s3fn.data.nodata import nodata_pixels
from s3fn.data.preprocess import Preprocessor
from s3fn.data.windows import WindowCutter
from s3fn.evaluate.predict import predict_probabilities


def check_reflect_size(height: int, width: int, window: tuple[int, int], where: str) -> None:
    """Refuse a cube too small to reflect-pad by half a window (numpy's reflect needs more)."""
    h, w = window
    if height <= h // 2 or width <= w // 2:
        raise S3FNDataError(
            f"{where}: a {height}x{width} cube is too small to reflect-pad for {h}x{w} "
            f"windows; expected at least {h // 2 + 1}x{w // 2 + 1} pixels"
        )


def classify_centres(
    model: nn.Module,
    preprocessor: Preprocessor,
    data: np.ndarray,
    pixels: np.ndarray,
    *,
    window: tuple[int, int],
    batch_size: int,
    device: torch.device,
    where: str,
) -> tuple[np.ndarray, np.ndarray]:
    """Class index (P,) and probabilities (P x K) of the windows centred on `pixels` (P x 2);
    -1 and NaN for a no-data pixel."""
    height, width = data.shape[:2]
    check_reflect_size(height, width, window, where)
    if ((pixels < 0) | (pixels >= (height, width))).any():
        raise S3FNDataError(f"{where}: pixels must lie inside the {height}x{width} cube")
    cutter = WindowCutter(preprocessor.transform_cube(data), window)
    probabilities = batched_probabilities(
        model, cutter.at_centres, pixels, batch_size=batch_size, device=device
    )
    labels = probabilities.argmax(axis=1)
    nodata = nodata_pixels(data[pixels[:, 0], pixels[:, 1]])
    labels[nodata] = -1
    probabilities[nodata] = np.nan
    return labels, probabilities


def batched_probabilities(
    model: nn.Module,
    cut: Callable[[np.ndarray], np.ndarray],
    points: np.ndarray,
    *,
    batch_size: int,
    device: torch.device,
) -> np.ndarray:
    """Probabilities (P x K) of the windows `cut` makes at `points` (P x 2), cut and classified
    a batch at a time so that only one batch of windows is ever in memory."""
    chunks = [
        predict_probabilities(
            model,
            torch.from_numpy(cut(points[start : start + batch_size])),
            batch_size=batch_size,
            device=device,
        )
        for start in range(0, len(points), batch_size)
    ]
    k = getattr(model, "n_classes", 0)
    return np.concatenate(chunks) if chunks else np.zeros((0, k), np.float32)
