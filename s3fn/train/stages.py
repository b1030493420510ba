"""The training stages: what is trained, with which loss, and what gives the logits."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from s3fn.models.semantic import S3FN

STAGES = ("cnn", "semantic", "joint")


@dataclass(frozen=True)
class StagePlan:
    """`module` gives the logits, `named_params` are trained, `loss(x, y)` is minimised."""

    module: nn.Module
    named_params: list[tuple[str, nn.Parameter]]
    loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]

    @property
    def params(self) -> list[nn.Parameter]:
        """The trained parameters."""
        return [param for _, param in self.named_params]


def plan_stage(model: nn.Module, stage: str, *, label_smoothing: float = 0.0) -> StagePlan:
    """Prepare `model` for `stage` (freezing or unfreezing the S3FN backbone) and say what to train.

    - "cnn" (stage 1): the classifier (the backbone of an S3FN) with cross-entropy (targets
      softened by `label_smoothing`).
    - "semantic" (stage 2): an S3FN's head only, the backbone frozen and in eval mode, with the
      cosine alignment loss.
    - "joint": an S3FN end to end with the cosine alignment loss.
    """
    if stage not in STAGES:
        raise ValueError(f"stage={stage!r}; expected one of {', '.join(STAGES)}")
    if stage == "cnn":
        if isinstance(model, S3FN):
            model.freeze_backbone(False)
            model = model.backbone
        module = model
        return StagePlan(
            module,
            _trainable(module),
            lambda x, y: F.cross_entropy(module(x), y, label_smoothing=label_smoothing),
        )
    if not isinstance(model, S3FN):
        raise TypeError(
            f"stage {stage!r} trains an S3FN model; got {type(model).__name__} "
            "(use stage='cnn' for a plain classifier)"
        )
    model.freeze_backbone(stage == "semantic")
    return StagePlan(model, _trainable(model), model.loss)


def _trainable(module: nn.Module) -> list[tuple[str, nn.Parameter]]:
    params = [(name, p) for name, p in module.named_parameters() if p.requires_grad]
    if not params:
        raise ValueError(f"{type(module).__name__}: no trainable parameters")
    return params
