"""Pure-PyTorch references of the s3fn ops: the definition the fused kernels are tested against."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def conv3d_block(
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None = None,
    *,
    padding: int | tuple[int, int, int] = 0,
    relu: bool = True,
    pool: str | None = None,
) -> torch.Tensor:
    """pool3d(relu(conv3d(x, weight, bias, padding))) with a 2x2x2, stride-2 pool."""
    y = F.conv3d(x, weight, bias, padding=padding)
    if relu:
        y = F.relu(y)
    if pool == "avg":
        y = F.avg_pool3d(y, 2)
    elif pool == "max":
        y = F.max_pool3d(y, 2)
    return y


def cosine_logits(
    features: torch.Tensor, class_embeddings: torch.Tensor, scale: torch.Tensor | float
) -> torch.Tensor:
    """scale * normalize(features) @ normalize(class_embeddings).T."""
    return scale * F.normalize(features, dim=1) @ F.normalize(class_embeddings, dim=1).T


def cosine_alignment_loss(
    features: torch.Tensor,
    class_embeddings: torch.Tensor,
    target: torch.Tensor,
    scale: torch.Tensor | float,
    *,
    reduction: str = "mean",
) -> torch.Tensor:
    """Softmax cross-entropy of the cosine logits against integer targets."""
    logits = cosine_logits(features, class_embeddings, scale)
    return F.cross_entropy(logits, target, reduction=reduction)
