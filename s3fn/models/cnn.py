"""The paper's spectral-spatial 3D-CNN (S3FN stage 1), with its 128-d feature exposed."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn

from s3fn.models.base import WindowClassifier
from s3fn.models.dense import dilated_features, shift_and_stitch, window_means
from s3fn.models.inputs import as_model_input, as_window
from s3fn.models.layers import Conv3dBlock

# (pool after the block) for the three conv blocks of DESIGN.md section 1, step 3.
PAPER_POOLS = ("avg", None, "avg")
NO_POOLS = (None, None, None)


class SpectralSpatialCNN(WindowClassifier):
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
        super().__init__(
            in_bands, n_classes, feature_dim=feature_dim, hidden_dim=hidden_dim, dropout=dropout
        )
        if len(channels) != len(PAPER_POOLS) or len(pools) != len(PAPER_POOLS):
            raise ValueError(
                f"channels={tuple(channels)}, pools={tuple(pools)}: expected "
                f"{len(PAPER_POOLS)} of each, one per conv block"
            )
        if any(pool not in ("avg", None) for pool in pools):
            raise ValueError(f"pools={tuple(pools)}: expected 'avg' or None for each block")
        self.window = as_window(window)
        self.channels = tuple(int(c) for c in channels)
        self.kernel_size = int(kernel_size)
        self.padding = int(padding)
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

    def architecture(self) -> dict[str, Any]:
        """The constructor arguments of the conv part and the spectral branch (JSON-ready)."""
        return {
            "window": list(self.window),
            "channels": list(self.channels),
            "kernel_size": self.kernel_size,
            "padding": self.padding,
            "spectral_branch": self.spectral_branch,
            "pools": list(self.pools),
        }

    @classmethod
    def from_config(
        cls, config: Mapping[str, Any], *, use_fused_ops: bool = True
    ) -> SpectralSpatialCNN:
        """A freshly initialised network of `config()`'s architecture (without its "type")."""
        args = dict(config)
        args["window"] = tuple(args["window"])
        args["channels"] = tuple(args["channels"])
        if "pools" in args:
            args["pools"] = tuple(args["pools"])
        return cls(**args, use_fused_ops=use_fused_ops)

    @property
    def dense_stride(self) -> int:
        """2 per stride-2 pool: the spacing of the dense pass's phase grids."""
        return 2 ** sum(pool is not None for pool in self.pools)

    def dense_unsupported(self) -> str | None:
        """Padded windows zero-pad their own borders, which a pass over a tile cannot repeat."""
        if self.padding != 0:
            return (
                f"{type(self).__name__} with padding={self.padding} is not supported (each "
                "window zero-pads its own borders, which a dense pass cannot reproduce); "
                "expected padding=0"
            )
        return None

    def dense_features(
        self, tile: torch.Tensor, window: tuple[int, int], *, dilated: bool = False
    ) -> torch.Tensor:
        """(rows * cols, feature_dim): `features` of every window of `tile`, by shift and stitch
        over the conv blocks, or with `dilated` by dilated convolutions, which trace for any
        tile size (`s3fn.models.dense`)."""
        h, w = window
        rows, cols = tile.shape[1] - h + 1, tile.shape[2] - w + 1
        if dilated:
            z = dilated_features(self, tile, rows, cols)
        else:
            z = shift_and_stitch(self, tile, rows, cols, self.dense_stride)
        if self.spectral is not None:
            centres = tile[:, h // 2 : h // 2 + rows, w // 2 : w // 2 + cols]
            centres = centres.permute(1, 2, 0).reshape(-1, tile.shape[0])
            z = z + self.spectral(torch.cat([window_means(tile, h, w), centres], dim=1))
        return torch.relu(z)


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
