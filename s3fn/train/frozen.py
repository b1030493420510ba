"""A frozen backbone computed once: its features for every window, then the head trained alone.

In the "semantic" stage the backbone is frozen and in eval mode, so each window's feature is
the same every epoch; computing it once makes an epoch of the head cost a pass over N x 128
numbers instead of N windows through the 3D-CNN. Where augmentation changes the windows, the
features of `draws` augmented copies of the training windows are computed once instead, and
epoch e trains on copy (e - 1) mod draws.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.profiler import record_function
from torch.utils.data import Dataset, TensorDataset

from s3fn.models.semantic import S3FN
from s3fn.train.augment import Augment
from s3fn.train.loading import make_loader, on_device
from s3fn.train.stages import StagePlan


class FeatureHead(nn.Module):
    """An S3FN read from precomputed backbone features: logits = model.classify_features(f)."""

    def __init__(self, model: S3FN) -> None:
        super().__init__()
        self.model = model

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """Class logits (N, K) of the feature rows."""
        return self.model.classify_features(features)


def can_cache(model: nn.Module, stage: str) -> bool:
    """Whether the stage trains a head on a frozen backbone, whose features can be computed
    once (per augmentation draw)."""
    return stage == "semantic" and isinstance(model, S3FN)


def feature_plan(plan: StagePlan) -> StagePlan:
    """The semantic stage's plan over feature rows instead of windows (same parameters)."""
    model = plan.module
    return StagePlan(FeatureHead(model), plan.named_params, model.feature_loss)


@torch.no_grad()
@record_function("s3fn.frozen_features")
def backbone_features(
    model: S3FN,
    data: Dataset,
    batch_size: int,
    device: torch.device,
    augment: Augment | None = None,
    generator: torch.Generator | None = None,
) -> TensorDataset:
    """(feature, label) rows of every window of `data`, in order, from the frozen backbone;
    each window augmented first by `augment` (draws from `generator`) when given."""
    backbone = model.backbone
    was_training = backbone.training
    backbone.eval()
    features, labels = [], []
    loader, _ = make_loader(data, batch_size, False)
    for batch in loader:
        x, y = on_device(batch, device)
        if augment is not None:
            x = augment(x, generator)
        features.append(backbone.features(x).float())
        labels.append(y)
    backbone.train(was_training)
    return TensorDataset(torch.cat(features), torch.cat(labels))
