"""The S3FN model written in plain PyTorch: the comparison for the end-to-end throughput figures.

Same architecture and parameter shapes as `s3fn.models.S3FN(SpectralSpatialCNN(...))`
(conv blocks 1->32 avg-pool, 32->64, 64->128 avg-pool, Dense(128)+ReLU, Dense(d_text)+ReLU,
cosine logits with a fixed scale), with `torch.nn` layers and `torch.nn.functional` only.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class PlainS3FN(nn.Module):
    """Backbone conv blocks + feature layer + semantic head, in eager PyTorch."""

    def __init__(
        self,
        in_bands: int,
        class_embeddings: torch.Tensor,
        *,
        window: int = 32,
        channels: tuple[int, int, int] = (32, 64, 128),
        feature_dim: int = 128,
        scale: float = 1.0,
    ) -> None:
        super().__init__()
        self.conv1 = nn.Conv3d(1, channels[0], 3)
        self.conv2 = nn.Conv3d(channels[0], channels[1], 3)
        self.conv3 = nn.Conv3d(channels[1], channels[2], 3)
        d = ((in_bands - 2) // 2 - 4) // 2
        s = ((window - 2) // 2 - 4) // 2
        self.feature = nn.Linear(channels[2] * d * s * s, feature_dim)
        self.head = nn.Linear(feature_dim, class_embeddings.shape[1])
        self.register_buffer("class_embeddings", class_embeddings.float().clone())
        self.scale = scale

    def backbone(self, x: torch.Tensor) -> torch.Tensor:
        """The three conv blocks: (N, 1, C, h, w) -> (N, 128, d, s, s)."""
        x = F.avg_pool3d(F.relu(self.conv1(x)), 2)
        x = F.relu(self.conv2(x))
        return F.avg_pool3d(F.relu(self.conv3(x)), 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Class logits (N, K): scaled cosine similarities to the class embeddings."""
        f = F.relu(self.feature(self.backbone(x).flatten(1)))
        z = F.relu(self.head(f))
        return self.scale * F.normalize(z, dim=1) @ F.normalize(self.class_embeddings, dim=1).T

    def loss(self, x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Mean softmax cross-entropy of the cosine logits."""
        return F.cross_entropy(self(x), target)
