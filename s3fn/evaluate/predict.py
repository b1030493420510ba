"""Model predictions over window datasets, scored at window level and at image level."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from s3fn.evaluate.metrics import Report
from s3fn.evaluate.voting import Votes, group_labels, vote


@torch.no_grad()
def predict_probabilities(
    model: nn.Module,
    windows: torch.Tensor | np.ndarray,
    *,
    batch_size: int = 256,
    device: str | torch.device | None = None,
) -> np.ndarray:
    """Softmax class probabilities (N x K float32) of preprocessed windows N x C x h x w."""
    device = torch.device(device) if device is not None else next(model.parameters()).device
    model.eval()
    windows = torch.as_tensor(windows)
    out = [
        torch.softmax(model(chunk.to(device, torch.float32)).float(), dim=1).cpu()
        for chunk in windows.split(batch_size)
    ]
    return torch.cat(out).numpy() if out else np.zeros((0, 0), dtype=np.float32)


@dataclass(frozen=True, eq=False)
class Evaluation:
    """Window-level and (when the windows have image ids) image-level results."""

    windows: Report
    images: Report | None
    probabilities: np.ndarray
    labels: np.ndarray
    votes: Votes | None

    def scalars(self) -> dict[str, float]:
        """{"window_oa", ..., "image_oa", ...}: the metrics of both levels in one flat dict."""
        out = {f"window_{k}": v for k, v in self.windows.scalars().items()}
        if self.images is not None:
            out.update({f"image_{k}": v for k, v in self.images.scalars().items()})
        return out


def evaluate(
    model: nn.Module,
    data: Dataset,
    *,
    class_names: Sequence[str] | None = None,
    groups: Sequence | np.ndarray | None = None,
    voting: str = "majority",
    batch_size: int = 256,
    device: str | torch.device | None = None,
) -> Evaluation:
    """Predict every window of `data` ((window, label[, image id]) items) and score them.

    Image ids come from `groups`, else the dataset's `image_index` (a `WindowStore`), else a
    third item element; with them, windows are voted per image (`voting`, see `vote_one`).
    Class names default to the dataset's `class_names`, else "0", "1", ...
    """
    loader = DataLoader(data, batch_size=batch_size, shuffle=False)
    probabilities, labels, ids = [], [], []
    for batch in loader:
        probabilities.append(predict_probabilities(model, batch[0], device=device))
        labels.append(np.asarray(batch[1], dtype=np.int64))
        if len(batch) > 2:
            ids.extend(batch[2])
    if not labels:
        raise ValueError("evaluate: the dataset holds no windows")
    probs, truth = np.concatenate(probabilities), np.concatenate(labels)
    if groups is None:
        groups = getattr(data, "image_index", None)
    if groups is None and ids:
        groups = np.asarray(ids)
    names = class_names or getattr(data, "class_names", None) or probs.shape[1]
    windows = Report.from_labels(truth, probs.argmax(axis=1), names)
    if groups is None:
        return Evaluation(windows, None, probs, truth, None)
    votes = vote(probs, groups, voting)
    images = Report.from_labels(group_labels(truth, groups), votes.labels, names)
    return Evaluation(windows, images, probs, truth, votes)
