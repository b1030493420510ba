"""The ops trace into torch.compile graphs without breaks and give eager's results."""

from __future__ import annotations

import torch

from s3fn import ops
from s3fn.ops import reference


def make_tiny_s3fn_loss(conv3d_block, cosine_alignment_loss):
    """Two conv blocks, a projection and the alignment loss, over the given op implementations."""

    def loss(x, w1, b1, w2, proj, classes, target, scale):
        h = conv3d_block(x, w1, b1, padding=1, pool="avg")
        h = conv3d_block(h, w2, None, pool="max")
        return cosine_alignment_loss(h.flatten(1) @ proj, classes, target, scale)

    return loss


def test_compile_fullgraph_forward_and_backward():
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(3, 1, 8, 10, 10, generator=gen)
    params = [
        torch.randn(4, 1, 3, 3, 3, generator=gen) / 3,
        torch.randn(4, generator=gen) / 10,
        torch.randn(6, 4, 3, 3, 3, generator=gen) / 6,
        torch.randn(6, 16, generator=gen),
        torch.randn(5, 16, generator=gen),
    ]
    target = torch.tensor([0, 4, 2])
    scale = torch.tensor(4.0)

    compiled = torch.compile(
        make_tiny_s3fn_loss(ops.conv3d_block, ops.cosine_alignment_loss), fullgraph=True
    )
    leaves = [p.clone().requires_grad_() for p in params]
    loss = compiled(x, *leaves, target, scale)
    grads = torch.autograd.grad(loss, leaves)

    eager = make_tiny_s3fn_loss(reference.conv3d_block, reference.cosine_alignment_loss)
    ref_leaves = [p.clone().requires_grad_() for p in params]
    expected = eager(x, *ref_leaves, target, scale)
    expected_grads = torch.autograd.grad(expected, ref_leaves)
    torch.testing.assert_close(loss, expected, rtol=1e-4, atol=1e-5)
    for got, want in zip(grads, expected_grads, strict=True):
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5)


def test_compile_channels_last_library_path():
    """Channels-last activations with 16 channels: oneDNN and the channels-last epilogues,
    where inductor checks the real outputs' strides against the fake kernels'."""
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(2, 16, 9, 10, 10, generator=gen).contiguous(
        memory_format=torch.channels_last_3d
    )
    params = [
        torch.randn(16, 16, 3, 3, 3, generator=gen) / 12,
        torch.randn(16, generator=gen) / 10,
        torch.randn(16, 16, 3, 3, 3, generator=gen) / 12,
        torch.randn(6, 16, 2, 2, 2, generator=gen) / 8,
    ]

    def make(conv3d_block):
        def f(x, w1, b1, w2, w3):
            h = conv3d_block(x, w1, b1, padding=1, pool="avg")
            h = conv3d_block(h, w2, None, padding=1)
            h = conv3d_block(h, w3, None, pool="max")
            return (h.flatten(1) ** 2).sum()

        return f

    compiled = torch.compile(make(ops.conv3d_block), fullgraph=True)
    leaves = [t.clone().requires_grad_() for t in (x, *params)]
    loss = compiled(*leaves)
    grads = torch.autograd.grad(loss, leaves)
    assert grads[0].is_contiguous(memory_format=torch.channels_last_3d)

    ref_leaves = [t.clone().requires_grad_() for t in (x, *params)]
    expected = make(reference.conv3d_block)(*ref_leaves)
    expected_grads = torch.autograd.grad(expected, ref_leaves)
    torch.testing.assert_close(loss, expected, rtol=1e-4, atol=1e-5)
    for got, want in zip(grads, expected_grads, strict=True):
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5)
