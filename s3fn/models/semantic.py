"""The S3FN semantic head: feature -> Dense(d_text)+ReLU -> cosine logits against class texts."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import nn

from s3fn.models.layers import ops_module

TEMPERATURES = ("fixed", "learnable")
PROTOTYPES = ("fixed", "learnable")


class S3FN(nn.Module):
    """Aligns a backbone's feature with frozen class embeddings by cosine similarity.

    `backbone` is any model with `features(x)` and `feature_dim` (`SpectralSpatialCNN`,
    `SpectralMeanMLP`); `class_embeddings` is K x d_text, row k for class k. The head is
    Dense(d_text)+ReLU (the paper), or Dense(head_dim)+ReLU -> Dense(d_text)+ReLU with
    `head_dim`. Logits are `scale * cos(head(feature), embedding_k)`: `temperature="fixed"`
    keeps `scale = init_scale` (1.0 is the paper's plain cosine); `"learnable"` learns
    log(scale) as CLIP does, with the scale clamped to at most `max_scale`. `prototypes`
    "learnable" starts the class vectors the features are compared with at the text embeddings
    and lets training move them (the text then shapes the start, not the end point).
    The class embeddings are a non-persistent buffer: they are passed to the constructor
    (and saved by `s3fn.Classifier` with the architecture), not stored in the state dict.
    """

    def __init__(
        self,
        backbone: nn.Module,
        class_embeddings: torch.Tensor,
        *,
        head_dim: int | None = None,
        temperature: str = "fixed",
        init_scale: float = 1.0,
        max_scale: float = 100.0,
        prototypes: str = "fixed",
        use_fused_ops: bool = True,
    ) -> None:
        super().__init__()
        embeddings = torch.as_tensor(class_embeddings, dtype=torch.float32)
        if embeddings.ndim != 2 or embeddings.shape[0] < 2 or embeddings.shape[1] < 1:
            raise ValueError(
                f"S3FN: class_embeddings of shape {tuple(embeddings.shape)}; expected K x d, K >= 2"
            )
        if not torch.isfinite(embeddings).all() or (embeddings.norm(dim=1) == 0).any():
            raise ValueError("S3FN: class_embeddings hold NaN, Inf or an all-zero row")
        if not hasattr(backbone, "features") or not hasattr(backbone, "feature_dim"):
            raise TypeError(
                f"S3FN: backbone {type(backbone).__name__} has no features() / feature_dim"
            )
        backbone_classes = getattr(backbone, "n_classes", embeddings.shape[0])
        if backbone_classes != embeddings.shape[0]:
            raise ValueError(
                f"S3FN: the backbone has {backbone_classes} classes but class_embeddings has "
                f"{embeddings.shape[0]} rows; expected one embedding per class"
            )
        if temperature not in TEMPERATURES:
            raise ValueError(f"S3FN: temperature={temperature!r}; expected 'fixed' or 'learnable'")
        if prototypes not in PROTOTYPES:
            raise ValueError(f"S3FN: prototypes={prototypes!r}; expected 'fixed' or 'learnable'")
        if not 0 < init_scale <= max_scale:
            raise ValueError(
                f"S3FN: init_scale={init_scale}, max_scale={max_scale}; expected 0 < init <= max"
            )
        self.backbone = backbone
        self.n_classes, self.text_dim = embeddings.shape
        self.head_dim = None if head_dim is None else int(head_dim)
        self.temperature = temperature
        self.init_scale = float(init_scale)
        self.max_scale = float(max_scale)
        self.use_fused_ops = use_fused_ops
        self.backbone_frozen = False
        self.register_buffer("class_embeddings", embeddings.clone(), persistent=False)
        self.prototypes = prototypes
        if prototypes == "learnable":
            self.class_prototypes = nn.Parameter(embeddings.clone())
        layers: list[nn.Module] = []
        width = backbone.feature_dim
        if self.head_dim is not None:
            layers += [nn.Linear(width, self.head_dim), nn.ReLU()]
            width = self.head_dim
        layers += [nn.Linear(width, self.text_dim), nn.ReLU()]
        self.head = nn.Sequential(*layers)
        if temperature == "learnable":
            self.log_scale = nn.Parameter(torch.tensor(math.log(self.init_scale)))
        else:
            self.register_buffer("fixed_scale", torch.tensor(self.init_scale), persistent=False)

    @property
    def targets(self) -> torch.Tensor:
        """The K class vectors the features are compared with: the text embeddings, or the
        prototypes learnt from them."""
        return self.class_prototypes if self.prototypes == "learnable" else self.class_embeddings

    @property
    def scale(self) -> torch.Tensor:
        """The logit scale (inverse temperature) as a 0-d tensor."""
        if self.temperature == "learnable":
            return self.log_scale.exp().clamp(max=self.max_scale)
        return self.fixed_scale

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """The projected feature head(backbone.features(x)): (N, d_text), float32."""
        return self.project(self.features(x))

    def project(self, features: torch.Tensor) -> torch.Tensor:
        """The head's projection of backbone `features` into the text space, float32."""
        return self.head(features).float()

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The backbone's feature (N, feature_dim), which the head projects."""
        return self.backbone.features(x)

    def classify_features(self, features: torch.Tensor) -> torch.Tensor:
        """Class logits (N, K) from `features` output: the head, then the cosine logits."""
        return ops_module(self.use_fused_ops).cosine_logits(
            self.project(features), self.targets, self.scale
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Class logits (N, K): scaled cosine similarities to the class embeddings."""
        return self.classify_features(self.features(x))

    def loss(self, x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Mean softmax cross-entropy of the cosine logits (fused; no N x K logits kept)."""
        return self.feature_loss(self.backbone.features(x), target)

    def feature_loss(self, features: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """`loss` from the backbone's `features` output (for features computed once)."""
        return ops_module(self.use_fused_ops).cosine_alignment_loss(
            self.project(features), self.targets, target, self.scale
        )

    def freeze_backbone(self, frozen: bool = True) -> S3FN:
        """Stop (or restart) training the backbone: no gradients, and eval mode (no dropout)."""
        self.backbone_frozen = frozen
        self.backbone.requires_grad_(not frozen)
        self.train(self.training)
        return self

    def train(self, mode: bool = True) -> S3FN:
        """Set train/eval mode; a frozen backbone stays in eval mode."""
        super().train(mode)
        if self.backbone_frozen:
            self.backbone.eval()
        return self

    def config(self) -> dict[str, Any]:
        """The constructor arguments (JSON-ready) except the class embeddings."""
        return {
            "type": type(self).__name__,
            "backbone": self.backbone.config(),
            "n_classes": self.n_classes,
            "text_dim": self.text_dim,
            "head_dim": self.head_dim,
            "temperature": self.temperature,
            "init_scale": self.init_scale,
            "max_scale": self.max_scale,
            "prototypes": self.prototypes,
        }

    @classmethod
    def from_config(
        cls,
        config: Mapping[str, Any],
        class_embeddings: torch.Tensor,
        *,
        build_backbone: Callable[[Mapping[str, Any]], nn.Module],
        use_fused_ops: bool = True,
    ) -> S3FN:
        """A freshly initialised S3FN of `config()`'s architecture (without its "type") on the
        `class_embeddings` (K x d_text) it was trained with; `build_backbone(config)` rebuilds
        the backbone from its own config."""
        args = dict(config)
        backbone = build_backbone(args.pop("backbone"))
        n_classes, text_dim = args.pop("n_classes"), args.pop("text_dim")
        if tuple(class_embeddings.shape) != (n_classes, text_dim):
            raise ValueError(
                f"model config: class_embeddings are {tuple(class_embeddings.shape)}; "
                f"expected ({n_classes}, {text_dim})"
            )
        return cls(backbone, class_embeddings, **args, use_fused_ops=use_fused_ops)

    @property
    def in_bands(self) -> int:
        """Bands (components) the backbone takes."""
        return self.backbone.in_bands

    @property
    def window(self) -> tuple[int, int] | None:
        """The window size the backbone takes (None: any)."""
        return self.backbone.window

    @property
    def dense_stride(self) -> int:
        """The backbone's dense stride."""
        return self.backbone.dense_stride

    def dense_unsupported(self) -> str | None:
        """Why the backbone cannot run densely, or None: the head works on any feature rows."""
        reason = self.backbone.dense_unsupported()
        return None if reason is None else f"an S3FN on a {reason}"

    def dense_features(
        self, tile: torch.Tensor, window: tuple[int, int], *, dilated: bool = False
    ) -> torch.Tensor:
        """The backbone's features of every window of `tile` (see `WindowClassifier`)."""
        return self.backbone.dense_features(tile, window, dilated=dilated)
