"""Rebuilding a model from its `config()`: what `s3fn.Classifier.load` and resumed runs use."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from s3fn.models.baselines import SpectralMeanMLP
from s3fn.models.cnn import SpectralSpatialCNN
from s3fn.models.semantic import S3FN

MODEL_TYPES = ("SpectralSpatialCNN", "SpectralMeanMLP", "S3FN")


def build_model(
    config: Mapping[str, Any],
    *,
    class_embeddings: torch.Tensor | None = None,
    use_fused_ops: bool = True,
) -> nn.Module:
    """A freshly initialised model of the architecture `config` describes.

    `class_embeddings` (K x d) is required for an S3FN config and refused otherwise.
    """
    kind = config.get("type")
    args = {k: v for k, v in config.items() if k != "type"}
    if kind not in MODEL_TYPES:
        raise ValueError(f"model config: type {kind!r}; expected one of {', '.join(MODEL_TYPES)}")
    if (kind == "S3FN") != (class_embeddings is not None):
        raise ValueError(
            f"model config: type {kind!r} "
            + ("needs class_embeddings" if kind == "S3FN" else "takes no class_embeddings")
        )
    try:
        if kind == "SpectralSpatialCNN":
            args["window"] = tuple(args["window"])
            args["channels"] = tuple(args["channels"])
            if "pools" in args:
                args["pools"] = tuple(args["pools"])
            return SpectralSpatialCNN(**args, use_fused_ops=use_fused_ops)
        if kind == "SpectralMeanMLP":
            return SpectralMeanMLP(**args)
        backbone = build_model(args.pop("backbone"), use_fused_ops=use_fused_ops)
        n_classes, text_dim = args.pop("n_classes"), args.pop("text_dim")
        if tuple(class_embeddings.shape) != (n_classes, text_dim):
            raise ValueError(
                f"model config: class_embeddings are {tuple(class_embeddings.shape)}; "
                f"expected ({n_classes}, {text_dim})"
            )
        return S3FN(backbone, class_embeddings, **args, use_fused_ops=use_fused_ops)
    except (KeyError, TypeError) as exc:
        raise ValueError(f"model config of type {kind!r}: {exc}") from exc
