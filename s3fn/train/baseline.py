"""The linear pixel model every run fits beside the network: softmax regression on standardised
spectra (a scene's labelled pixels, or each object image's mean spectrum), in a few seconds.

It is what a remote-sensing user would try first; a network that does not beat it on the
validation part is not earning its cost, and the run says so.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from s3fn.data.datasets import ObjectDataset, SceneDataset
from s3fn.evaluate.metrics import Report

C = 1.0  # inverse L2 strength per sample, as scikit-learn's LogisticRegression default


@dataclass(frozen=True, eq=False)
class LinearPixelModel:
    """Softmax regression on z-scored spectra: `mean` and `scale` (B,), `weight` (K, B),
    `bias` (K,), all float64."""

    mean: np.ndarray
    scale: np.ndarray
    weight: np.ndarray
    bias: np.ndarray

    @classmethod
    def fit(cls, spectra: np.ndarray, labels: np.ndarray, n_classes: int) -> LinearPixelModel:
        """Fit on N x B spectra and their class indices, minimising the mean cross-entropy plus
        ||W||^2 / (2 C N) (scikit-learn's objective divided by C N) with L-BFGS in float64."""
        x = np.asarray(spectra, dtype=np.float64)
        mean, scale = x.mean(axis=0), x.std(axis=0)
        scale[scale == 0] = 1.0
        z = torch.from_numpy((x - mean) / scale)
        y = torch.as_tensor(np.asarray(labels, dtype=np.int64))
        weight = torch.zeros((n_classes, z.shape[1]), dtype=torch.float64, requires_grad=True)
        bias = torch.zeros(n_classes, dtype=torch.float64, requires_grad=True)
        penalty = 1.0 / (2.0 * C * len(y))
        optimizer = torch.optim.LBFGS(
            [weight, bias], max_iter=500, tolerance_grad=1e-7, line_search_fn="strong_wolfe"
        )

        def loss() -> torch.Tensor:
            optimizer.zero_grad()
            value = F.cross_entropy(z @ weight.T + bias, y) + penalty * weight.square().sum()
            value.backward()
            return value

        optimizer.step(loss)
        return cls(mean, scale, weight.detach().numpy(), bias.detach().numpy())

    def probabilities(self, spectra: np.ndarray) -> np.ndarray:
        """N x K softmax probabilities of N x B spectra."""
        z = (np.asarray(spectra, dtype=np.float64) - self.mean) / self.scale
        logits = z @ self.weight.T + self.bias
        logits -= logits.max(axis=1, keepdims=True)
        e = np.exp(logits)
        return e / e.sum(axis=1, keepdims=True)


def samples(data: ObjectDataset | SceneDataset, part: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(spectra, class indices) of a part: the pixels (P x 2) of a scene, or the mean spectrum
    inside the mask of each image of an object dataset."""
    if isinstance(data, SceneDataset):
        rows, cols = part[:, 0], part[:, 1]
        return data.cube.data[rows, cols], data.labels[rows, cols] - 1
    spectra, labels = [], []
    for i in part:
        sample = data[int(i)]
        spectra.append(sample.cube.data[sample.mask].mean(axis=0))
        labels.append(sample.label)
    return np.stack(spectra), np.asarray(labels, dtype=np.int64)


def linear_baseline(
    data: ObjectDataset | SceneDataset, train: np.ndarray, val: np.ndarray
) -> tuple[LinearPixelModel, Report]:
    """The linear pixel model fitted on `train` and its report on `val`."""
    x, y = samples(data, train)
    model = LinearPixelModel.fit(x, y, len(data.class_names))
    x_val, y_val = samples(data, val)
    predicted = model.probabilities(x_val).argmax(axis=1)
    return model, Report.from_labels(y_val, predicted, data.class_names)
