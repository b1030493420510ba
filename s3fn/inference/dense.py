"""Dense scene inference: the window classifier run fully convolutionally over a whole tile.

Windows cut one per pixel share almost all their input, so cutting them recomputes each
convolution output for every window that covers it. Here the network runs once per tile: the
convolutions over the whole tile, each 2x2x2 stride-2 pool as a stride-1 spatial pool whose 4
spatial phases are then stacked into the batch (shift and stitch), the feature Linear as a
convolution over the last map, the window's mean spectrum as a box filter. Each pixel gets the
probabilities its own window would get, up to float rounding.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch import nn

from s3fn.models.baselines import SpectralMeanMLP
from s3fn.models.cnn import SpectralSpatialCNN
from s3fn.models.inputs import as_window
from s3fn.models.layers import ops_module
from s3fn.models.semantic import S3FN

# Output pixels per tile; see `dense_probabilities` for the memory it takes.
DEFAULT_MAX_PIXELS = 1 << 16


def supports_dense(model: nn.Module) -> bool:
    """Whether `dense_probabilities` runs `model` exactly: a SpectralSpatialCNN without padding,
    a SpectralMeanMLP, or an S3FN on either."""
    return _unsupported(model) is None


@torch.no_grad()
def dense_probabilities(
    model: nn.Module,
    planes: torch.Tensor,
    window: int | tuple[int, int],
    *,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> torch.Tensor:
    """H x W x K float32 softmax probabilities, on the model's device, of every h x w window of
    `planes` (C x (H + h - 1) x (W + w - 1), preprocessed, padded by the caller): pixel (r, c)
    gets those of the window whose top-left corner is (r, c), as `model` in eval mode gives.

    The output is computed in tiles of at most `max_pixels` pixels (whole-width row strips
    where the scene is narrow enough), which bounds the peak memory: about 1.2 GB at the
    default for the paper's network with 30 components and 32 x 32 windows.
    """
    reason = _unsupported(model)
    if reason is not None:
        raise ValueError(f"dense_probabilities: {reason}")
    h, w = as_window(window)
    backbone = model.backbone if isinstance(model, S3FN) else model
    cnn = backbone if isinstance(backbone, SpectralSpatialCNN) else None
    if cnn is not None and cnn.window != (h, w):
        raise ValueError(
            f"dense_probabilities: window {h}x{w}; this model takes "
            f"{cnn.window[0]}x{cnn.window[1]} windows"
        )
    planes = torch.as_tensor(planes)
    if planes.ndim != 3:
        raise ValueError(
            f"dense_probabilities: planes of shape {tuple(planes.shape)}; expected "
            "C x (H + h - 1) x (W + w - 1)"
        )
    if planes.shape[0] != backbone.in_bands:
        raise ValueError(
            f"dense_probabilities: planes have {planes.shape[0]} bands (components); this "
            f"model takes {backbone.in_bands}"
        )
    height, width = planes.shape[1] - h + 1, planes.shape[2] - w + 1
    if height < 1 or width < 1:
        raise ValueError(
            f"dense_probabilities: planes of {planes.shape[1]}x{planes.shape[2]} pixels are "
            f"smaller than one {h}x{w} window"
        )
    if max_pixels < 1:
        raise ValueError(f"dense_probabilities: max_pixels={max_pixels}; expected >= 1")
    parameter = next(model.parameters())
    planes = planes.to(parameter.device, parameter.dtype)
    step = 2 ** sum(pool is not None for pool in cnn.pools) if cnn is not None else 1
    out = torch.empty(
        (height, width, model.n_classes), dtype=torch.float32, device=parameter.device
    )
    with _eval_mode(model):
        for r0, c0, rows, cols in _tiles(height, width, step, max_pixels):
            tile = planes[:, r0 : r0 + rows + h - 1, c0 : c0 + cols + w - 1]
            means = _window_means(tile, h, w)
            if cnn is None:
                features = model.features(means[:, :, None, None])
            else:
                z = _dense_feature(cnn, tile, rows, cols, step)
                if cnn.spectral is not None:
                    centres = tile[:, h // 2 : h // 2 + rows, w // 2 : w // 2 + cols]
                    centres = centres.permute(1, 2, 0).reshape(-1, tile.shape[0])
                    z = z + cnn.spectral(torch.cat([means, centres], dim=1))
                features = torch.relu(z)
            logits = model.classify_features(features).float()
            out[r0 : r0 + rows, c0 : c0 + cols] = torch.softmax(logits, dim=1).view(rows, cols, -1)
    return out


def _unsupported(model: nn.Module) -> str | None:
    backbone = model.backbone if isinstance(model, S3FN) else model
    name = type(backbone).__name__
    if isinstance(model, S3FN):
        name = f"an S3FN on a {name}"
    if isinstance(backbone, SpectralMeanMLP):
        return None
    if isinstance(backbone, SpectralSpatialCNN):
        if backbone.padding != 0:
            return (
                f"{name} with padding={backbone.padding} is not supported (each window "
                "zero-pads its own borders, which a dense pass cannot reproduce); expected "
                "padding=0"
            )
        return None
    return f"{name} is not supported; expected a SpectralSpatialCNN or a SpectralMeanMLP"


@contextmanager
def _eval_mode(model: nn.Module) -> Iterator[None]:
    """Eval mode (no dropout) inside, each submodule's own mode restored after."""
    modes = [(module, module.training) for module in model.modules()]
    model.eval()
    try:
        yield
    finally:
        for module, mode in modes:
            module.training = mode


def _tiles(
    height: int, width: int, step: int, max_pixels: int
) -> Iterator[tuple[int, int, int, int]]:
    """(row, column, rows, columns) of output tiles of at most `max_pixels` pixels (at least
    step x step), rows and columns multiples of `step` (the network's total pooling stride)
    but at the far edges: whole-width row strips when the scene is no wider than a square
    tile, else square tiles, whose halo (recomputed by both neighbours) is the smallest."""
    side = max(step, math.isqrt(max_pixels) // step * step)
    cols = _round_up(width, step)
    if cols <= side:
        rows = max(side, max_pixels // cols // step * step)
    else:
        rows, cols = side, side
    for r0 in range(0, height, rows):
        for c0 in range(0, width, cols):
            yield r0, c0, min(rows, height - r0), min(cols, width - c0)


def _round_up(n: int, step: int) -> int:
    return -(-n // step) * step


def _window_means(tile: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """(rows * cols, C): the mean spectrum of each h x w window of `tile`, from a summed-area
    table in float64 (exact enough to difference; ATen's stride-1 avg_pool2d is ~10x slower)."""
    table = F.pad(tile.double(), (1, 0, 1, 0)).cumsum(1).cumsum(2)
    sums = table[:, h:, w:] - table[:, :-h, w:] - table[:, h:, :-w] + table[:, :-h, :-w]
    return (sums / (h * w)).to(tile.dtype).permute(1, 2, 0).reshape(-1, tile.shape[0])


def _dense_feature(
    cnn: SpectralSpatialCNN, tile: torch.Tensor, rows: int, cols: int, step: int
) -> torch.Tensor:
    """(rows * cols, feature_dim): the feature Linear's output (before the spectral branch and
    the ReLU) of each window of `tile`, by shift and stitch over the conv blocks."""
    h, w = cnn.window
    padded_rows, padded_cols = _round_up(rows, step), _round_up(cols, step)
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
