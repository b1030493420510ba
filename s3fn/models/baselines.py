"""Baselines: the spectral mean of a window through an MLP (no spatial information)."""

from __future__ import annotations

import torch
from torch import nn

from s3fn.models.base import WindowClassifier
from s3fn.models.dense import window_means
from s3fn.models.inputs import as_model_input


class SpectralMeanMLP(WindowClassifier):
    """The window's mean spectrum -> Dense(128)+ReLU [the feature] -> Dropout -> Dense(64)+ReLU
    -> Dense(K): the paper's spectral-mean baseline, with the 3D-CNN's classifier layout.

    Takes windows of any size, N x 1 x C x h x w or N x C x h x w, C = `in_bands`.
    """

    def __init__(
        self,
        in_bands: int,
        n_classes: int,
        *,
        feature_dim: int = 128,
        hidden_dim: int = 64,
        dropout: float = 0.5,
    ) -> None:
        super().__init__(
            in_bands, n_classes, feature_dim=feature_dim, hidden_dim=hidden_dim, dropout=dropout
        )
        self.feature = nn.Sequential(nn.Linear(self.in_bands, self.feature_dim), nn.ReLU())

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The `feature_dim`-d feature of each window's mean spectrum: (N, feature_dim)."""
        x = as_model_input(x, self.in_bands, None, type(self).__name__)
        return self.feature(x.mean(dim=(1, 3, 4)))

    def dense_unsupported(self) -> str | None:
        """Window means run densely as a box filter: always supported."""
        return None

    def dense_features(
        self, tile: torch.Tensor, window: tuple[int, int], *, dilated: bool = False
    ) -> torch.Tensor:
        """(rows * cols, feature_dim): the feature of every window's mean spectrum (one pass
        for any tile size: `dilated` changes nothing)."""
        return self.feature(window_means(tile, *window))
