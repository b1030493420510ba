"""Object images: seeded windows inside the object mask, their probabilities, and the vote."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from s3fn.data.errors import S3FNDataError
from s3fn.data.nodata import nodata_pixels
from s3fn.data.pipeline import cut_object_windows
from s3fn.data.preprocess import Preprocessor
from s3fn.evaluate.predict import predict_probabilities


@dataclass(frozen=True, eq=False)
class ImagePrediction:
    """The class of one image: its name and index, the mean window probabilities (K,), the
    window votes per class (K,), and the windows' top-left corners (n x 2)."""

    label: str
    index: int
    probabilities: np.ndarray
    votes: np.ndarray
    origins: np.ndarray


def object_mask(
    data: np.ndarray, mask: np.ndarray | None, threshold: float, where: str
) -> np.ndarray:
    """The given H x W mask as booleans, or "band sum > `threshold`" (zero background); never
    at no-data pixels, so no window drawn inside it reaches one."""
    if mask is None:
        return data.sum(axis=2) > threshold
    mask = np.asarray(mask, dtype=bool)
    if mask.shape != data.shape[:2]:
        raise S3FNDataError(
            f"{where}: mask is {mask.shape}; expected {data.shape[:2]} like the cube"
        )
    return mask & ~nodata_pixels(data)


def window_probabilities(
    model: nn.Module,
    preprocessor: Preprocessor,
    data: np.ndarray,
    mask: np.ndarray,
    *,
    n_windows: int,
    window: tuple[int, int],
    seed: int,
    batch_size: int,
    device: torch.device,
    where: str,
) -> tuple[np.ndarray, np.ndarray]:
    """Probabilities (n x K) of `n_windows` windows drawn by `seed` inside `mask`, and their
    top-left corners (n x 2)."""
    rng = np.random.default_rng(seed)
    try:
        windows, origins = cut_object_windows(data, mask, preprocessor, n_windows, window, rng)
    except S3FNDataError as exc:
        raise S3FNDataError(f"{where}: {exc}") from None
    probabilities = predict_probabilities(
        model, torch.from_numpy(windows), batch_size=batch_size, device=device
    )
    return probabilities, origins
