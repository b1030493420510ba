"""conv3d_block: 3D convolution + bias + optional ReLU + optional 2x2x2 pooling in one fused op."""

from __future__ import annotations

import os

import torch
from torch._prims_common import suggest_memory_format

from s3fn.ops._args import POOL_CODES, as_padding3

_OP = "s3fn::conv3d_block"

# The CPU kernel runs float32 layers with this many input channels or more in oneDNN
# (kLibraryMinChannels, see use_library_conv in csrc/op_checks.h).
LIBRARY_MIN_CHANNELS = 16


def conv3d_block(
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None = None,
    *,
    padding: int | tuple[int, int, int] = 0,
    relu: bool = True,
    pool: str | None = None,
) -> torch.Tensor:
    """Fused `pool3d(relu(conv3d(x, weight, bias, padding=padding)))`.

    x is (N, C_in, D, H, W), weight (C_out, C_in, kt, kh, kw) with kernel sizes 1..7,
    stride 1, zero padding; pool is None, "avg" or "max" (2x2x2 window, stride 2,
    floor). Differentiable in x, weight and bias. The output (and x's gradient) has x's
    memory format: channels_last_3d or contiguous.
    """
    if pool not in POOL_CODES:
        raise ValueError(f"conv3d_block: pool must be None, 'avg' or 'max', got {pool!r}")
    needs_grad = torch.is_grad_enabled() and (
        x.requires_grad or weight.requires_grad or (bias is not None and bias.requires_grad)
    )
    out, _ = torch.ops.s3fn.conv3d_block(
        x, weight, bias, as_padding3(padding), bool(relu), POOL_CODES[pool], needs_grad
    )
    return out


def fast_layout(x: torch.Tensor, in_channels: int) -> torch.Tensor:
    """x in the memory format `conv3d_block` runs fastest on: channels-last for a float32 CPU
    layer wide enough for oneDNN, which then reorders no activations (and the op keeps the
    format, so the next wide layer gets it as is); else x as it is. Follows the kernel's
    choice of path, S3FN_CPU_CONV included."""
    forced = os.environ.get("S3FN_CPU_CONV")
    wide = x.dtype == torch.float32 and in_channels >= LIBRARY_MIN_CHANNELS
    library = forced == "library" or (forced != "direct" and wide)
    if x.device.type == "cpu" and library:
        return x.contiguous(memory_format=torch.channels_last_3d)
    return x


def _conv_out(size: int, pad: int, kernel: int) -> int:
    return size + 2 * pad - kernel + 1


def _empty(shape, like: torch.Tensor, memory_format: torch.memory_format, dtype=None):
    return torch.empty(
        shape, dtype=dtype or like.dtype, device=like.device, memory_format=memory_format
    )


@torch.library.register_fake(_OP)
def _conv3d_block_fake(x, weight, bias, padding, relu, pool, save_aux):
    n, _, d, h, w = x.shape
    c_out = weight.shape[0]
    conv = [
        _conv_out(s, p, k) for s, p, k in zip((d, h, w), padding, weight.shape[2:], strict=True)
    ]
    spatial = conv if pool == 0 else [s // 2 for s in conv]
    # The Python twin of the kernels' x.suggest_memory_format().
    fmt = suggest_memory_format(x)
    cpu_cl = x.device.type == "cpu" and fmt == torch.channels_last_3d
    out = _empty((n, c_out, *spatial), x, fmt)
    if save_aux and pool == 1 and relu:
        # The ReLU mask: on the CPU bit-packed, per conv plane for an NCDHW x and per
        # position's channels for a channels-last one; a byte per element on CUDA.
        if cpu_cl:
            mask_shape = (n, *conv, (c_out + 7) // 8)
        elif x.device.type == "cpu":
            mask_shape = (n, c_out, conv[0], (conv[1] * conv[2] + 7) // 8)
        else:
            mask_shape = (n, c_out, *conv)
        aux = x.new_empty(mask_shape, dtype=torch.uint8)
    elif save_aux and pool == 2:
        argmax_format = torch.channels_last_3d if cpu_cl else torch.contiguous_format
        aux = _empty((n, c_out, *spatial), x, argmax_format, dtype=torch.uint8)
    else:
        aux = x.new_empty((0,), dtype=torch.uint8)
    return out, aux


@torch.library.register_fake("s3fn::conv3d_block_backward")
def _conv3d_block_backward_fake(grad_out, x, weight, out, aux, padding, relu, pool, output_mask):
    # grad_x in x's memory format, grad_weight and grad_bias contiguous.
    return (
        _empty(x.shape, x, suggest_memory_format(x)) if output_mask[0] else x.new_empty((0,)),
        weight.new_empty(weight.shape if output_mask[1] else (0,)),
        weight.new_empty((weight.shape[0],) if output_mask[2] else (0,)),
    )


def _setup_context(ctx, inputs, output):
    x, weight, _bias, padding, relu, pool, _save_aux = inputs
    out, aux = output
    ctx.mark_non_differentiable(aux)
    ctx.save_for_backward(x, weight, out, aux)
    ctx.padding, ctx.relu, ctx.pool = padding, relu, pool


def _backward(ctx, grad_out, _grad_aux):
    x, weight, out, aux = ctx.saved_tensors
    mask = list(ctx.needs_input_grad[:3])
    grad_x, grad_w, grad_b = torch.ops.s3fn.conv3d_block_backward(
        grad_out, x, weight, out, aux, ctx.padding, ctx.relu, ctx.pool, mask
    )
    return (
        grad_x if mask[0] else None,
        grad_w if mask[1] else None,
        grad_b if mask[2] else None,
        None,
        None,
        None,
        None,
    )


torch.library.register_autograd(_OP, _backward, setup_context=_setup_context)
