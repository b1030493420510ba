"""The model registry: every model users can train is declared here once, by name.

An entry says how to build the model from the data's shape and the settings (`build`), the
stages it trains in, whether it needs class texts, and how it exports (`export`, a slot the
exported map models fill). Training, the `s3fn` command, the config checks and the bundle
loader all read it; each architecture's module says itself how it runs densely and how it is
rebuilt from a bundle (`ARCHITECTURES`). Adding a variant is one more `ModelSpec` below.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from s3fn.models.baselines import SpectralMeanMLP
from s3fn.models.cnn import SpectralSpatialCNN
from s3fn.models.linear import LinearPixel
from s3fn.models.semantic import S3FN

# The architectures a bundle can hold, by the "type" their config() writes.
ARCHITECTURES: dict[str, type[nn.Module]] = {
    cls.__name__: cls for cls in (SpectralSpatialCNN, SpectralMeanMLP, S3FN, LinearPixel)
}
MODEL_TYPES = tuple(ARCHITECTURES)


@dataclass(frozen=True)
class ModelRequest:
    """What a builder needs: the data's shape, the class texts, and the resolved settings."""

    in_bands: int
    n_classes: int
    window: tuple[int, int]
    pools: tuple[str | None, ...]
    class_embeddings: torch.Tensor | None
    channels: tuple[int, ...]
    padding: int
    spectral_branch: bool
    head_dim: int | None
    temperature: str
    init_scale: float
    prototypes: str
    use_fused_ops: bool = True
    spectrum: str = "centre"  # what a linear pixel model reads: "centre" (scenes) or "mean"

    def cnn(self) -> SpectralSpatialCNN:
        """The paper's 3D-CNN of this request."""
        return SpectralSpatialCNN(
            self.in_bands,
            self.n_classes,
            window=self.window,
            channels=self.channels,
            padding=self.padding,
            pools=self.pools,
            spectral_branch=self.spectral_branch,
            use_fused_ops=self.use_fused_ops,
        )

    def linear(self) -> LinearPixel:
        """The linear pixel model of this request (fitted in closed form, no stages)."""
        return LinearPixel(self.in_bands, self.n_classes, reduce=self.spectrum)

    def mean_mlp(self) -> SpectralMeanMLP:
        """The spectral-mean baseline of this request."""
        return SpectralMeanMLP(self.in_bands, self.n_classes)

    def s3fn(self) -> S3FN:
        """The 3D-CNN under the semantic head, on this request's class embeddings."""
        return S3FN(
            self.cnn(),
            self.class_embeddings,
            head_dim=self.head_dim,
            temperature=self.temperature,
            init_scale=self.init_scale,
            prototypes=self.prototypes,
            use_fused_ops=self.use_fused_ops,
        )


@dataclass(frozen=True)
class ModelSpec:
    """One model users can train: its name (`s3fn train --stage NAME`), a label for reports,
    its builder, the training stages it runs in order (none: the model is fitted in closed
    form by its `fit_windows`), whether it needs class texts, and how it exports (None: as the
    generic dense map model)."""

    name: str
    label: str
    build: Callable[[ModelRequest], nn.Module]
    stages: tuple[str, ...]
    uses_text: bool
    export: Callable[..., Any] | None = None


MODELS: dict[str, ModelSpec] = {
    spec.name: spec
    for spec in (
        ModelSpec("two-stage", "S3FN (two-stage)", ModelRequest.s3fn, ("cnn", "semantic"), True),
        ModelSpec("joint", "S3FN (joint)", ModelRequest.s3fn, ("joint",), True),
        ModelSpec("cnn", "3D-CNN", ModelRequest.cnn, ("cnn",), False),
        ModelSpec("spectral-mean", "Spectral-mean MLP", ModelRequest.mean_mlp, ("cnn",), False),
        ModelSpec("linear", "linear pixel model", ModelRequest.linear, (), False),
    )
}


def list_models() -> tuple[str, ...]:
    """The names of the models users can train."""
    return tuple(MODELS)


def get_model(name: str) -> ModelSpec:
    """The registry entry called `name`; a ValueError lists the known ones."""
    if name not in MODELS:
        raise ValueError(f"model {name!r}; expected one of {', '.join(MODELS)}")
    return MODELS[name]


def build_model(
    config: Mapping[str, Any],
    *,
    class_embeddings: torch.Tensor | None = None,
    use_fused_ops: bool = True,
) -> nn.Module:
    """A freshly initialised model of the architecture `config` describes (a model's
    `config()`, as a bundle stores it).

    `class_embeddings` (K x d) is required for an S3FN config and refused otherwise.
    """
    kind = config.get("type")
    if kind not in ARCHITECTURES:
        raise ValueError(f"model config: type {kind!r}; expected one of {', '.join(MODEL_TYPES)}")
    if (kind == "S3FN") != (class_embeddings is not None):
        raise ValueError(
            f"model config: type {kind!r} "
            + ("needs class_embeddings" if kind == "S3FN" else "takes no class_embeddings")
        )
    args = {k: v for k, v in config.items() if k != "type"}
    try:
        if kind == "S3FN":
            return S3FN.from_config(
                args,
                class_embeddings,
                build_backbone=lambda c: build_model(c, use_fused_ops=use_fused_ops),
                use_fused_ops=use_fused_ops,
            )
        return ARCHITECTURES[kind].from_config(args, use_fused_ops=use_fused_ops)
    except (KeyError, TypeError) as exc:
        raise ValueError(f"model config of type {kind!r}: {exc}") from exc
