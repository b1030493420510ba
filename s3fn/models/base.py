"""What every window classifier shares: a feature, the paper's classifier head on it, its
config for the bundle, and the interface of the dense (fully convolutional) pass."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from s3fn.models.inputs import check_counts
from s3fn.models.layers import classifier_head


class WindowClassifier(nn.Module):
    """A classifier of N x 1 x C x h x w windows (C = `in_bands`): `features(x)` gives a
    `feature_dim`-d feature, then Dropout -> Dense(hidden_dim)+ReLU -> Dense(K) gives the logits.

    A subclass defines `features`, `architecture()` (its own constructor arguments, beside the
    shared ones in `config()`), and, where each pixel's window can be computed in one pass over
    a whole tile, `dense_features` and `dense_stride`.
    """

    window: tuple[int, int] | None = None  # the window size taken; None: any

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
        self.classifier = classifier_head(
            self.feature_dim, self.hidden_dim, self.n_classes, self.dropout
        )

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The `feature_dim`-d feature of each window: (N, feature_dim)."""
        raise NotImplementedError

    def classify_features(self, features: torch.Tensor) -> torch.Tensor:
        """Class logits (N, n_classes) from `features` output."""
        return self.classifier(features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Class logits (N, n_classes)."""
        return self.classify_features(self.features(x))

    def architecture(self) -> dict[str, Any]:
        """The subclass's own constructor arguments (JSON-ready)."""
        return {}

    def config(self) -> dict[str, Any]:
        """The constructor arguments (JSON-ready) that rebuild this architecture."""
        return {
            "type": type(self).__name__,
            "in_bands": self.in_bands,
            "n_classes": self.n_classes,
            **self.architecture(),
            "feature_dim": self.feature_dim,
            "hidden_dim": self.hidden_dim,
            "dropout": self.dropout,
        }

    @classmethod
    def from_config(cls, config: Mapping[str, Any], *, use_fused_ops: bool = True) -> nn.Module:
        """A freshly initialised model of `config()`'s architecture (without its "type")."""
        return cls(**config)

    @property
    def dense_stride(self) -> int:
        """The stride between output pixels of the dense pass's phase grids (the pools')."""
        return 1

    def dense_unsupported(self) -> str | None:
        """Why `dense_features` cannot reproduce this model's windows, or None when it can."""
        return f"{type(self).__name__} is not supported; it has no dense pass"

    def dense_features(
        self, tile: torch.Tensor, window: tuple[int, int], *, dilated: bool = False
    ) -> torch.Tensor:
        """(rows * cols, feature_dim): `features` of every h x w window of `tile`
        (C x (rows + h - 1) x (cols + w - 1)), row by row, computed in one pass; `dilated`
        asks for a pass that traces for any tile size (export), where pooling makes it differ."""
        raise NotImplementedError(self.dense_unsupported())
