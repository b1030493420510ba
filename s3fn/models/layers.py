"""Layers built on the s3fn ops, switchable to their pure-PyTorch references."""

from __future__ import annotations

from types import ModuleType

import torch
import torch.distributed as dist
from torch import nn


def ops_module(use_fused_ops: bool) -> ModuleType:
    """`s3fn.ops` (fused kernels) or `s3fn.ops.reference` (plain PyTorch)."""
    import s3fn.ops

    return s3fn.ops if use_fused_ops else s3fn.ops.reference


def autocast_inputs(*tensors: torch.Tensor | None) -> list[torch.Tensor | None]:
    """The tensors cast to the autocast dtype when autocast is on for their device, else as is.

    Custom ops are not cast by autocast itself; this does for them what autocast does for
    `torch.nn.functional.conv3d` and `linear`.
    """
    first = next(t for t in tensors if t is not None)
    kind = first.device.type
    if not torch.is_autocast_enabled(kind):
        return list(tensors)
    dtype = torch.get_autocast_dtype(kind)
    return [None if t is None else t.to(dtype) for t in tensors]


class Conv3dBlock(nn.Conv3d):
    """`pool(relu(conv3d(x)))` in one fused op: a `Conv3d` (same parameters, same init) with an
    optional ReLU and an optional 2x2x2 average or max pool, stride 1."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int | tuple[int, int, int] = 3,
        *,
        padding: int = 0,
        relu: bool = True,
        pool: str | None = None,
        use_fused_ops: bool = True,
    ) -> None:
        if pool not in (None, "avg", "max"):
            raise ValueError(f"Conv3dBlock: pool must be None, 'avg' or 'max', got {pool!r}")
        super().__init__(in_channels, out_channels, kernel_size, padding=padding)
        self.relu = relu
        self.pool = pool
        self.use_fused_ops = use_fused_ops

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, C_in, D, H, W) -> (N, C_out, D', H', W')."""
        x, weight, bias = autocast_inputs(x, self.weight, self.bias)
        ops = ops_module(self.use_fused_ops)
        if self.use_fused_ops:
            x = ops.fast_layout(x, self.in_channels)
        return ops.conv3d_block(
            x, weight, bias, padding=self.padding, relu=self.relu, pool=self.pool
        )

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, relu={self.relu}, pool={self.pool!r}"


class ShardedDropout(nn.Dropout):
    """Dropout that, in data-parallel training, drops on each rank its rows of the mask one
    process would draw for the whole global batch.

    s3fn's data-parallel `fit` gives rank r rows r, r + N, ... of each global batch and keeps
    the ranks' random states in step. A plain `nn.Dropout` would then draw the same local mask
    on every rank; drawing the global mask and keeping this rank's rows drops exactly what one
    process drops. Outside a process group (or with p = 0, or in eval mode) it is
    `nn.Dropout`.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x with elements zeroed with probability p and the rest scaled by 1 / (1 - p)."""
        grouped = dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1
        if not (self.training and self.p > 0 and grouped) or self.inplace:
            return super().forward(x)
        if self.p == 1:
            return x * 0.0
        world, rank = dist.get_world_size(), dist.get_rank()
        keep = x.new_empty((x.shape[0] * world, *x.shape[1:])).bernoulli_(1 - self.p)
        return x * keep[rank::world].div_(1 - self.p)


def classifier_head(feature_dim: int, hidden_dim: int, n_classes: int, dropout: float) -> nn.Module:
    """Dropout -> Dense(hidden)+ReLU -> Dense(K): the classifier on a backbone's feature."""
    return nn.Sequential(
        ShardedDropout(dropout),
        nn.Linear(feature_dim, hidden_dim),
        nn.ReLU(),
        nn.Linear(hidden_dim, n_classes),
    )
