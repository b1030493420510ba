"""Baselines: the spectral mean of a window through an MLP (no spatial information)."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from s3fn.models.inputs import as_model_input, check_counts
from s3fn.models.layers import classifier_head


class SpectralMeanMLP(nn.Module):
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
        super().__init__()
        check_counts(in_bands, n_classes)
        self.in_bands = int(in_bands)
        self.n_classes = int(n_classes)
        self.feature_dim = int(feature_dim)
        self.hidden_dim = int(hidden_dim)
        self.dropout = float(dropout)
        self.feature = nn.Sequential(nn.Linear(self.in_bands, self.feature_dim), nn.ReLU())
        self.classifier = classifier_head(
            self.feature_dim, self.hidden_dim, self.n_classes, self.dropout
        )

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The `feature_dim`-d feature of each window's mean spectrum: (N, feature_dim)."""
        x = as_model_input(x, self.in_bands, None, type(self).__name__)
        return self.feature(x.mean(dim=(1, 3, 4)))

    def classify_features(self, features: torch.Tensor) -> torch.Tensor:
        """Class logits (N, n_classes) from `features` output."""
        return self.classifier(features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Class logits (N, n_classes)."""
        return self.classify_features(self.features(x))

    def config(self) -> dict[str, Any]:
        """The constructor arguments (JSON-ready) that rebuild this architecture."""
        return {
            "type": type(self).__name__,
            "in_bands": self.in_bands,
            "n_classes": self.n_classes,
            "feature_dim": self.feature_dim,
            "hidden_dim": self.hidden_dim,
            "dropout": self.dropout,
        }
