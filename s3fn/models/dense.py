"""The 3D-CNN run fully convolutionally over a whole tile (shift and stitch), and window means
from a summed-area table: how the models compute every pixel's window in one pass.

Windows cut one per pixel share almost all their input, so cutting them recomputes each
convolution output for every window that covers it. Here the convolutions run once over the
whole tile, each 2x2x2 stride-2 pool as a stride-1 spatial pool whose 4 spatial phases are then
stacked into the batch, the feature Linear as a convolution over the last map, and the window's
mean spectrum as a box filter. Each pixel gets what its own window would give, up to float
rounding.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F

from s3fn.models.layers import ops_module

if TYPE_CHECKING:
    from s3fn.models.cnn import SpectralSpatialCNN


def round_up(n: int, step: int) -> int:
    """`n` rounded up to a multiple of `step`."""
    return -(-n // step) * step


def window_means(tile: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """(rows * cols, C): the mean spectrum of each h x w window of `tile`, from a summed-area
    table in float64 (exact enough to difference; ATen's stride-1 avg_pool2d is ~10x slower)."""
    table = F.pad(tile.double(), (1, 0, 1, 0)).cumsum(1).cumsum(2)
    sums = table[:, h:, w:] - table[:, :-h, w:] - table[:, h:, :-w] + table[:, :-h, :-w]
    return (sums / (h * w)).to(tile.dtype).permute(1, 2, 0).reshape(-1, tile.shape[0])


def shift_and_stitch(
    cnn: SpectralSpatialCNN, tile: torch.Tensor, rows: int, cols: int, step: int
) -> torch.Tensor:
    """(rows * cols, feature_dim): the feature Linear's output (before the spectral branch and
    the ReLU) of each window of `tile`, by shift and stitch over the conv blocks."""
    h, w = cnn.window
    padded_rows, padded_cols = round_up(rows, step), round_up(cols, step)
    # Zero rows and columns at the far edges make every phase grid the same size; the windows
    # they add are computed and dropped.
    x = F.pad(tile, (0, padded_cols - cols, 0, padded_rows - rows))[None, None]
    # Phase p of the batch holds, at grid (u, v), what the window of output pixel
    # (oy + spacing * u, ox + spacing * v) sees at its local (0, 0), with (oy, ox) = offsets[p].
    offsets, spacing = [(0, 0)], 1
    count = [padded_rows, padded_cols]  # windows per phase along each axis
    extent = [h, w]  # one window's local map size
    scale = 1.0  # x holds 2x2x2 window sums, not averages, when this is 1/8
    for block in cnn.blocks:
        conv = ops_module(block.use_fused_ops).conv3d_block
        weight = block.weight * scale
        kernel = block.weight.shape[3:]
        extent = [e - k + 1 for e, k in zip(extent, kernel, strict=True)]
        if block.pool is None:
            x = conv(x, weight, block.bias, relu=block.relu)
            scale = 1.0
            continue
        count = [n // 2 for n in count]
        extent = [e // 2 for e in extent]
        size = [n + e - 1 for n, e in zip(count, extent, strict=True)]
        if block.in_channels == 1:
            # With one input channel, computing the conv once per phase, pooled by the fused op,
            # costs less than a pass over the full-size conv output.
            span = [2 * s + k - 1 for s, k in zip(size, kernel, strict=True)]
            shifted = [x[..., a : a + span[0], b : b + span[1]] for a in (0, 1) for b in (0, 1)]
            x = conv(
                torch.stack(shifted, 1).flatten(0, 1),
                weight,
                block.bias,
                relu=block.relu,
                pool="avg",
            )
            scale = 1.0
        else:
            x = _pooled_phases(conv(x, weight, block.bias, relu=block.relu), size)
            scale = 1 / 8  # exact: the next layer's weights absorb the average's division
        offsets = [
            (oy + spacing * a, ox + spacing * b)
            for oy, ox in offsets
            for a in (0, 1)
            for b in (0, 1)
        ]
        spacing *= 2
    linear = cnn.feature[1]
    phases, channels, depth = x.shape[:3]
    weight = linear.weight.view(linear.out_features, channels * depth, *extent) * scale
    z = F.conv2d(x.flatten(1, 2), weight, linear.bias)  # phases x features x count
    order = sorted(range(phases), key=lambda p: offsets[p])
    z = z[order].view(spacing, spacing, linear.out_features, *count)
    z = z.permute(3, 0, 4, 1, 2).reshape(padded_rows, padded_cols, linear.out_features)
    return z[:rows, :cols].reshape(rows * cols, linear.out_features)


def dilated_features(
    cnn: SpectralSpatialCNN, tile: torch.Tensor, rows: int, cols: int
) -> torch.Tensor:
    """(rows * cols, feature_dim): what `shift_and_stitch` gives, by dilated (a trous)
    convolutions on the tile's own grid: each stride-2 pool becomes a stride-1 pool over pixels
    and every layer after it dilates by 2 more. No size rounds up, so the pass traces for any
    tile size (export); it runs on plain PyTorch ops, since `conv3d_block` has no dilation."""
    x = tile[None, None]
    dilation = 1
    extent = list(cnn.window)  # one window's local map size
    for block in cnn.blocks:
        extent = [e - k + 1 for e, k in zip(extent, block.weight.shape[3:], strict=True)]
        x = F.conv3d(x, block.weight, block.bias, dilation=(1, dilation, dilation))
        if block.relu:
            x = F.relu(x)
        if block.pool is not None:
            depth = x.shape[2] // 2
            x = x[:, :, 0 : 2 * depth : 2] + x[:, :, 1 : 2 * depth : 2]
            x = x[..., :-dilation, :] + x[..., dilation:, :]
            x = (x[..., :-dilation] + x[..., dilation:]) * 0.125
            extent = [e // 2 for e in extent]
            dilation *= 2
    linear = cnn.feature[1]
    channels, depth = x.shape[1:3]
    weight = linear.weight.view(linear.out_features, channels * depth, *extent)
    z = F.conv2d(x.flatten(1, 2), weight, linear.bias, dilation=dilation)
    # The windows' last rows and columns that a floor pool dropped leave extra outputs: cropped.
    return z[0, :, :rows, :cols].reshape(linear.out_features, rows * cols).T


def _pooled_phases(y: torch.Tensor, size: list[int]) -> torch.Tensor:
    """(P, C, D, H, W) -> (4P, C, D // 2, rows, cols): the sums over 2x2x2 windows (stride 2
    over bands, 1 over pixels) of each map, split into its 4 spatial phases (rows a::2,
    columns b::2, cropped to `size`) stacked after their parent, (a, b) in raster order.

    Three passes of additions: ATen's avg_pool3d with overlapping windows runs at a fraction
    of the memory bandwidth.
    """
    rows, cols = size
    depth = y.shape[2] // 2
    y = y[:, :, 0 : 2 * depth : 2] + y[:, :, 1 : 2 * depth : 2]
    y = y[..., :-1, :] + y[..., 1:, :]
    out = y.new_empty((y.shape[0], 4, *y.shape[1:3], rows, cols))
    for a in (0, 1):
        pairs = y[..., a : a + 2 * rows : 2, :]
        for b in (0, 1):
            left, right = pairs[..., b : b + 2 * cols : 2], pairs[..., b + 1 : b + 1 + 2 * cols : 2]
            torch.add(left, right, out=out[:, 2 * a + b])
    return out.flatten(0, 1)
