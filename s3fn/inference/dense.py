"""Dense scene inference: the window classifier run fully convolutionally over a whole tile.

Windows cut one per pixel share almost all their input. Here the network runs once per tile,
through the model's own dense pass (`dense_features`; the 3D-CNN's shift and stitch is in
`s3fn.models.dense`), tile by tile to bound memory. Each pixel gets the probabilities its own
window would get, up to float rounding.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn

from s3fn.models.dense import round_up
from s3fn.models.inputs import as_window

# Output pixels per tile; see `dense_probabilities` for the memory it takes.
DEFAULT_MAX_PIXELS = 1 << 16


def supports_dense(model: nn.Module) -> bool:
    """Whether `dense_probabilities` runs `model` exactly: a model of `s3fn.models` whose
    `dense_unsupported()` names no reason (a SpectralSpatialCNN without padding, a
    SpectralMeanMLP, or an S3FN on either)."""
    return unsupported_reason(model) is None


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
    reason = unsupported_reason(model)
    if reason is not None:
        raise ValueError(f"dense_probabilities: {reason}")
    h, w = as_window(window)
    if model.window is not None and model.window != (h, w):
        raise ValueError(
            f"dense_probabilities: window {h}x{w}; this model takes "
            f"{model.window[0]}x{model.window[1]} windows"
        )
    planes = torch.as_tensor(planes)
    if planes.ndim != 3:
        raise ValueError(
            f"dense_probabilities: planes of shape {tuple(planes.shape)}; expected "
            "C x (H + h - 1) x (W + w - 1)"
        )
    if planes.shape[0] != model.in_bands:
        raise ValueError(
            f"dense_probabilities: planes have {planes.shape[0]} bands (components); this "
            f"model takes {model.in_bands}"
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
    out = torch.empty(
        (height, width, model.n_classes), dtype=torch.float32, device=parameter.device
    )
    with _eval_mode(model):
        for r0, c0, rows, cols in _tiles(height, width, model.dense_stride, max_pixels):
            tile = planes[:, r0 : r0 + rows + h - 1, c0 : c0 + cols + w - 1]
            features = model.dense_features(tile, (h, w))
            logits = model.classify_features(features).float()
            out[r0 : r0 + rows, c0 : c0 + cols] = torch.softmax(logits, dim=1).view(rows, cols, -1)
    return out


def unsupported_reason(model: nn.Module) -> str | None:
    """Why `dense_probabilities` cannot run `model`, or None when it can."""
    reason = getattr(model, "dense_unsupported", None)
    if reason is None:
        return (
            f"{type(model).__name__} is not supported; expected a SpectralSpatialCNN, a "
            "SpectralMeanMLP or an S3FN on either"
        )
    return reason()


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
    cols = round_up(width, step)
    if cols <= side:
        rows = max(side, max_pixels // cols // step * step)
    else:
        rows, cols = side, side
    for r0 in range(0, height, rows):
        for c0 in range(0, width, cols):
            yield r0, c0, min(rows, height - r0), min(cols, width - c0)
