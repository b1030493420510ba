"""A frozen backbone computed once: its features for every window, then the head trained alone.

In the "semantic" stage the backbone is frozen and in eval mode, so where augmentation does not
change the windows, each window's feature is the same every epoch; computing it once makes an
epoch of the head cost a pass over N x 128 numbers instead of N windows through the 3D-CNN.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, TensorDataset

from s3fn.models.semantic import S3FN
from s3fn.train.augment import Augment
from s3fn.train.stages import StagePlan


class FeatureHead(nn.Module):
    """An S3FN read from precomputed backbone features: logits = model.classify_features(f)."""

    def __init__(self, model: S3FN) -> None:
        super().__init__()
        self.model = model

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """Class logits (N, K) of the feature rows."""
        return self.model.classify_features(features)


def can_cache(model: nn.Module, stage: str, augment: Augment | None) -> bool:
    """Whether the stage trains on a frozen backbone whose inputs augmentation leaves as they
    are, so that its features can be computed once."""
    unchanged = augment is None or not augment.changes_input
    return stage == "semantic" and isinstance(model, S3FN) and unchanged


def feature_plan(plan: StagePlan) -> StagePlan:
    """The semantic stage's plan over feature rows instead of windows (same parameters)."""
    model = plan.module
    return StagePlan(FeatureHead(model), plan.named_params, model.feature_loss)


@torch.no_grad()
def backbone_features(
    model: S3FN, data: Dataset, batch_size: int, device: torch.device
) -> TensorDataset:
    """(feature, label) rows of every window of `data`, in order, from the frozen backbone."""
    backbone = model.backbone
    was_training = backbone.training
    backbone.eval()
    features, labels = [], []
    for batch in DataLoader(data, batch_size=batch_size, shuffle=False):
        x = torch.as_tensor(batch[0]).to(device, torch.float32)
        features.append(backbone.features(x).float())
        labels.append(torch.as_tensor(batch[1]).to(device, torch.long))
    backbone.train(was_training)
    return TensorDataset(torch.cat(features), torch.cat(labels))
