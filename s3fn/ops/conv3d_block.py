"""conv3d_block: 3D convolution + bias + optional ReLU + optional 2x2x2 pooling in one fused op."""

from __future__ import annotations

import torch

from s3fn.ops._args import POOL_CODES, as_padding3

_OP = "s3fn::conv3d_block"


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
    floor). Differentiable in x, weight and bias.
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


def _conv_out(size: int, pad: int, kernel: int) -> int:
    return size + 2 * pad - kernel + 1


@torch.library.register_fake(_OP)
def _conv3d_block_fake(x, weight, bias, padding, relu, pool, save_aux):
    n, _, d, h, w = x.shape
    conv = [
        _conv_out(s, p, k) for s, p, k in zip((d, h, w), padding, weight.shape[2:], strict=True)
    ]
    spatial = conv if pool == 0 else [s // 2 for s in conv]
    out = x.new_empty((n, weight.shape[0], *spatial))
    if save_aux and pool == 1 and relu:
        # The ReLU mask: bit-packed per conv plane on the CPU, a byte per element on CUDA.
        if x.device.type == "cpu":
            mask_shape = (n, weight.shape[0], conv[0], (conv[1] * conv[2] + 7) // 8)
        else:
            mask_shape = (n, weight.shape[0], *conv)
        aux = x.new_empty(mask_shape, dtype=torch.uint8)
    elif save_aux and pool == 2:
        aux = x.new_empty((n, weight.shape[0], *spatial), dtype=torch.uint8)
    else:
        aux = x.new_empty((0,), dtype=torch.uint8)
    return out, aux


@torch.library.register_fake("s3fn::conv3d_block_backward")
def _conv3d_block_backward_fake(grad_out, x, weight, out, aux, padding, relu, pool, output_mask):
    def maybe(t: torch.Tensor, wanted: bool) -> torch.Tensor:
        return torch.empty_like(t) if wanted else t.new_empty((0,))

    grad_bias_like = weight.new_empty((weight.shape[0],))
    return (
        maybe(x, output_mask[0]),
        maybe(weight, output_mask[1]),
        maybe(grad_bias_like, output_mask[2]),
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
