"""The linear pixel model as a model of the package: softmax regression on a window's centre
pixel (scenes) or mean spectrum (objects), in the network's input components.

Every run fits it beside the network (in closed form, seconds); the bundle holds it instead of
the network where the network does not beat it on the validation part.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from s3fn.models.dense import window_means
from s3fn.models.inputs import as_model_input, check_counts

REDUCTIONS = ("centre", "mean")

C = 1.0  # inverse L2 strength per sample, as scikit-learn's LogisticRegression default
STRENGTHS = (C, 0.1, 10.0)  # the C a run chooses from on validation, the default first


@dataclass(frozen=True, eq=False)
class SoftmaxRegression:
    """Multinomial logistic regression fitted to convergence: `weight` (K, B) and `bias` (K,),
    float64. The inputs are taken as they come: on principal components, z-scoring each would
    blow up the low-variance directions and with them the noise."""

    weight: np.ndarray
    bias: np.ndarray

    @classmethod
    def fit(
        cls, x: np.ndarray, labels: np.ndarray, n_classes: int, strength: float = C
    ) -> SoftmaxRegression:
        """Fit on N x B inputs and their class indices, minimising the mean cross-entropy plus
        ||W||^2 / (2 C N), C = `strength` (scikit-learn's objective divided by C N), with
        L-BFGS in float64."""
        z = torch.as_tensor(np.asarray(x, dtype=np.float64))
        y = torch.as_tensor(np.asarray(labels, dtype=np.int64))
        weight = torch.zeros((n_classes, z.shape[1]), dtype=torch.float64, requires_grad=True)
        bias = torch.zeros(n_classes, dtype=torch.float64, requires_grad=True)
        penalty = 1.0 / (2.0 * strength * len(y))
        optimizer = torch.optim.LBFGS(
            [weight, bias], max_iter=500, tolerance_grad=1e-7, line_search_fn="strong_wolfe"
        )

        def loss() -> torch.Tensor:
            optimizer.zero_grad()
            value = F.cross_entropy(z @ weight.T + bias, y) + penalty * weight.square().sum()
            value.backward()
            return value

        optimizer.step(loss)
        return cls(weight.detach().numpy(), bias.detach().numpy())


class LinearPixel(nn.Module):
    """logits = W s + b, s the window's centre-pixel spectrum (`reduce="centre"`) or its mean
    spectrum (`"mean"`), C = `in_bands` components in. Takes windows of any size, N x 1 x C x h
    x w or N x C x h x w. `fit_windows` fits it (it is not trained by gradient descent)."""

    window: tuple[int, int] | None = None

    def __init__(self, in_bands: int, n_classes: int, *, reduce: str = "centre") -> None:
        super().__init__()
        check_counts(in_bands, n_classes)
        if reduce not in REDUCTIONS:
            raise ValueError(f"LinearPixel: reduce={reduce!r}; expected 'centre' or 'mean'")
        self.in_bands, self.n_classes, self.reduce = int(in_bands), int(n_classes), reduce
        self.linear = nn.Linear(self.in_bands, self.n_classes)

    def spectra(self, x: torch.Tensor) -> torch.Tensor:
        """(N, C): each window's centre-pixel or mean spectrum."""
        x = as_model_input(x, self.in_bands, None, type(self).__name__)
        if self.reduce == "mean":
            return x.mean(dim=(1, 3, 4))
        return x[:, 0, :, x.shape[3] // 2, x.shape[4] // 2]

    def classify_features(self, features: torch.Tensor) -> torch.Tensor:
        """Class logits (N, K) of spectra (N, C)."""
        return self.linear(features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Class logits (N, K)."""
        return self.classify_features(self.spectra(x))

    @torch.no_grad()
    def window_spectra(
        self, batches: Iterable[tuple[torch.Tensor, torch.Tensor]]
    ) -> tuple[np.ndarray, np.ndarray]:
        """(N x C float64 spectra this model reads, N class indices) of batches of windows."""
        spectra, labels = [], []
        for windows, classes in batches:
            spectra.append(self.spectra(torch.as_tensor(windows, dtype=torch.float32)).double())
            labels.append(torch.as_tensor(classes))
        return torch.cat(spectra).numpy(), torch.cat(labels).numpy()

    @torch.no_grad()
    def fit_spectra(
        self, spectra: np.ndarray, labels: np.ndarray, strength: float = C
    ) -> LinearPixel:
        """Fit W and b on `window_spectra`'s output (`SoftmaxRegression` with C =
        `strength`); returns self."""
        fitted = SoftmaxRegression.fit(spectra, labels, self.n_classes, strength)
        self.linear.weight.copy_(torch.from_numpy(fitted.weight))
        self.linear.bias.copy_(torch.from_numpy(fitted.bias))
        return self

    def fit_windows(
        self, batches: Iterable[tuple[torch.Tensor, torch.Tensor]], strength: float = C
    ) -> LinearPixel:
        """Fit W and b on batches of training windows and their class indices; returns self."""
        return self.fit_spectra(*self.window_spectra(batches), strength)

    def config(self) -> dict[str, Any]:
        """The constructor arguments (JSON-ready) that rebuild this model."""
        return {
            "type": type(self).__name__,
            "in_bands": self.in_bands,
            "n_classes": self.n_classes,
            "reduce": self.reduce,
        }

    @classmethod
    def from_config(cls, config: Mapping[str, Any], *, use_fused_ops: bool = True) -> LinearPixel:
        """A model of `config()`'s shape (without its "type"); its weights come from a bundle."""
        return cls(**config)

    @property
    def dense_stride(self) -> int:
        """Every pixel's spectrum is read directly: stride 1."""
        return 1

    def dense_unsupported(self) -> str | None:
        """Always runs densely."""
        return None

    def dense_features(
        self, tile: torch.Tensor, window: tuple[int, int], *, dilated: bool = False
    ) -> torch.Tensor:
        """(rows * cols, C): the centre-pixel or mean spectrum of every window of `tile` (one
        pass for any tile size: `dilated` changes nothing)."""
        h, w = window
        if self.reduce == "mean":
            return window_means(tile, h, w)
        rows, cols = tile.shape[1] - h + 1, tile.shape[2] - w + 1
        centres = tile[:, h // 2 : h // 2 + rows, w // 2 : w // 2 + cols]
        return centres.permute(1, 2, 0).reshape(-1, tile.shape[0])
