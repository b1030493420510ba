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


TEXT_TARGET_TEMPERATURE = 0.1


def text_soft_targets(class_embeddings: torch.Tensor, mass: float) -> torch.Tensor:
    """K x K target distributions: row k keeps 1 - `mass` on class k and spreads `mass` over the
    other classes by the cosine similarity of their texts to class k's (softmax at 0.1), so a
    confusion the descriptions call close costs less than one they call far."""
    unit = F.normalize(class_embeddings.float(), dim=1)
    similarity = unit @ unit.T / TEXT_TARGET_TEMPERATURE
    eye = torch.eye(len(unit), dtype=torch.bool, device=unit.device)
    others = torch.softmax(similarity.masked_fill(eye, float("-inf")), dim=1)
    return (1 - mass) * eye.float() + mass * others


def plan_stage(
    model: nn.Module, stage: str, *, label_smoothing: float = 0.0, text_targets: float = 0.0
) -> StagePlan:
    """Prepare `model` for `stage` (freezing or unfreezing the S3FN backbone) and say what to train.

    - "cnn" (stage 1): the classifier (the backbone of an S3FN) with cross-entropy (targets
      softened by `label_smoothing`, and with `text_targets` > 0 by the class texts'
      similarities, `text_soft_targets`; that needs an S3FN's class embeddings).
    - "semantic" (stage 2): an S3FN's head only, the backbone frozen and in eval mode, with the
      cosine alignment loss.
    - "joint": an S3FN end to end with the cosine alignment loss.
    """
    if stage not in STAGES:
        raise ValueError(f"stage={stage!r}; expected one of {', '.join(STAGES)}")
    if stage == "cnn":
        soft = None
        if text_targets > 0:
            if not isinstance(model, S3FN):
                raise TypeError(
                    f"text_targets={text_targets} needs an S3FN model (its class embeddings); "
                    f"got {type(model).__name__}"
                )
            soft = text_soft_targets(model.class_embeddings, text_targets)
        if isinstance(model, S3FN):
            model.freeze_backbone(False)
            model = model.backbone
        module = model

        def loss(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
            target = y if soft is None else soft.to(y.device)[y]
            return F.cross_entropy(module(x), target, label_smoothing=label_smoothing)

        return StagePlan(module, _trainable(module), loss)
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
