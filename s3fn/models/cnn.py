"""The paper's spectral-spatial 3D-CNN (S3FN stage 1), with its 128-d feature exposed."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from s3fn.models.inputs import as_model_input, as_window, check_counts
from s3fn.models.layers import Conv3dBlock, classifier_head

# (pool after the block) for the three conv blocks of DESIGN.md section 1, step 3.
PAPER_POOLS = ("avg", None, "avg")
NO_POOLS = (None, None, None)


class SpectralSpatialCNN(nn.Module):
    """Conv3d(1->32)+ReLU, AvgPool 2 -> Conv3d(32->64)+ReLU -> Conv3d(64->128)+ReLU, AvgPool 2
    -> Flatten -> Dense(128)+ReLU [the feature] -> Dropout(0.5) -> Dense(64)+ReLU -> Dense(K).

    Input N x 1 x C x h x w (or N x C x h x w) with C = `in_bands` (PCA components) and
    h x w = `window`. Valid padding by default as in the paper; `padding=1` keeps sizes through
    each convolution, for inputs too small for the valid architecture. With `spectral_branch`,
    the window's mean spectrum and its centre pixel's spectrum enter the feature layer too
    (Dense(2C -> 128) added before its ReLU): the direct spectral evidence a linear model uses,
    which small training sets and sharp class borders need.
    `pools` (the 2x2x2 pool after each block: "avg" or None) defaults to the paper's; without
    pools the valid architecture takes windows down to 7 x 7, for small objects and scenes.
    """

    def __init__(
        self,
        in_bands: int,
        n_classes: int,
        *,
        window: int | tuple[int, int] = 32,
        channels: Sequence[int] = (32, 64, 128),
        kernel_size: int = 3,
        padding: int = 0,
        feature_dim: int = 128,
        hidden_dim: int = 64,
        dropout: float = 0.5,
        spectral_branch: bool = False,
        pools: Sequence[str | None] = PAPER_POOLS,
        use_fused_ops: bool = True,
    ) -> None:
        super().__init__()
        if len(channels) != len(PAPER_POOLS) or len(pools) != len(PAPER_POOLS):
            raise ValueError(
                f"channels={tuple(channels)}, pools={tuple(pools)}: expected "
                f"{len(PAPER_POOLS)} of each, one per conv block"
            )
        if any(pool not in ("avg", None) for pool in pools):
            raise ValueError(f"pools={tuple(pools)}: expected 'avg' or None for each block")
        check_counts(in_bands, n_classes)
        self.in_bands = int(in_bands)
        self.n_classes = int(n_classes)
        self.window = as_window(window)
        self.channels = tuple(int(c) for c in channels)
        self.kernel_size = int(kernel_size)
        self.padding = int(padding)
        self.feature_dim = int(feature_dim)
        self.hidden_dim = int(hidden_dim)
        self.dropout = float(dropout)
        self.spectral_branch = bool(spectral_branch)
        self.pools = tuple(pools)
        out_shape = conv_output_shape(
            (self.in_bands, *self.window), self.kernel_size, self.padding, self.pools
        )
        blocks = []
        previous = 1
        for width, pool in zip(self.channels, self.pools, strict=True):
            blocks.append(
                Conv3dBlock(
                    previous,
                    width,
                    self.kernel_size,
                    padding=self.padding,
                    pool=pool,
                    use_fused_ops=use_fused_ops,
                )
            )
            previous = width
        self.blocks = nn.Sequential(*blocks)
        flat = self.channels[-1] * out_shape[0] * out_shape[1] * out_shape[2]
        self.feature = nn.Sequential(nn.Flatten(), nn.Linear(flat, self.feature_dim))
        self.spectral = nn.Linear(2 * self.in_bands, self.feature_dim) if spectral_branch else None
        self.classifier = classifier_head(
            self.feature_dim, self.hidden_dim, self.n_classes, self.dropout
        )

    @property
    def use_fused_ops(self) -> bool:
        """Whether the conv blocks run the fused kernels (else the PyTorch reference)."""
        return all(block.use_fused_ops for block in self.blocks)

    @use_fused_ops.setter
    def use_fused_ops(self, value: bool) -> None:
        for block in self.blocks:
            block.use_fused_ops = bool(value)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The `feature_dim`-d feature after Dense(128)+ReLU: (N, feature_dim)."""
        x = as_model_input(x, self.in_bands, self.window, type(self).__name__)
        z = self.feature(self.blocks(x))
        if self.spectral is not None:
            z = z + self.spectral(self.spectral_input(x))
        return torch.relu(z)

    def spectral_input(self, x: torch.Tensor) -> torch.Tensor:
        """(N, 2C): each window's mean spectrum, then its centre pixel's (at h // 2, w // 2)."""
        h, w = self.window
        return torch.cat([x.mean(dim=(3, 4)).flatten(1), x[:, 0, :, h // 2, w // 2]], dim=1)

    def classify_features(self, features: torch.Tensor) -> torch.Tensor:
        """Class logits (N, n_classes) from `features` output."""
        return self.classifier(features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Class logits (N, n_classes)."""
        return self.classify_features(self.features(x))

    def config(self) -> dict[str, Any]:
        """The constructor arguments (JSON-ready) that rebuild this architecture."""
        return {
            "type": type(self).__name__,
            "in_bands": self.in_bands,
            "n_classes": self.n_classes,
            "window": list(self.window),
            "channels": list(self.channels),
            "kernel_size": self.kernel_size,
            "padding": self.padding,
            "feature_dim": self.feature_dim,
            "hidden_dim": self.hidden_dim,
            "dropout": self.dropout,
            "spectral_branch": self.spectral_branch,
            "pools": list(self.pools),
        }


def conv_output_shape(
    shape: tuple[int, int, int],
    kernel_size: int,
    padding: int,
    pools: Sequence[str | None] = PAPER_POOLS,
) -> tuple[int, int, int]:
    """(D, H, W) after the three conv blocks for an input of `shape` = (bands, height, width).

    Raises a ValueError naming the smallest accepted size if a block would empty a dimension.
    """
    traces = [_block_sizes(s, kernel_size, padding, pools) for s in shape]
    for step in range(len(pools)):
        sizes = tuple(trace[step] for trace in traces)
        if min(sizes) < 1:
            raise ValueError(
                f"SpectralSpatialCNN: input of {shape[0]} bands and a {shape[1]}x{shape[2]} "
                f"window is too small: conv block {step + 1} leaves {sizes}; with kernel "
                f"{kernel_size} and padding {padding}, bands, height and width must each be "
                f">= {minimum_input_size(kernel_size, padding, pools)} (use a larger window, "
                "more PCA components, or padding=1)"
            )
    return traces[0][-1], traces[1][-1], traces[2][-1]


def minimum_input_size(
    kernel_size: int, padding: int, pools: Sequence[str | None] = PAPER_POOLS
) -> int:
    """The smallest bands / height / width that the three conv blocks accept."""
    size = 1
    while min(_block_sizes(size, kernel_size, padding, pools)) < 1:
        size += 1
    return size


def _block_sizes(
    size: int, kernel_size: int, padding: int, pools: Sequence[str | None]
) -> list[int]:
    sizes = []
    for pool in pools:
        size = size + 2 * padding - kernel_size + 1
        if pool is not None:
            size //= 2
        sizes.append(size)
    return sizes
