"""Bad inputs to the ops fail with one clear message naming the argument."""

from __future__ import annotations

import pytest
import torch

from s3fn.ops import conv3d_block, cosine_alignment_loss, cosine_logits
from tests.conftest import CUDA


def conv_inputs():
    return torch.randn(2, 3, 6, 6, 6), torch.randn(4, 3, 3, 3, 3), torch.randn(4)


@pytest.mark.parametrize(
    ("mutate", "error", "message"),
    [
        (lambda x, w, b: (x[0], w, b), ValueError, "x must be 5-D"),
        (lambda x, w, b: (x, w[0], b), ValueError, "weight must be 5-D"),
        (lambda x, w, b: (x, w[:, :2], b), ValueError, "weight has 2 input channels but x has 3"),
        (
            lambda x, w, b: (x, torch.randn(4, 3, 8, 3, 3), b),
            ValueError,
            "kernel size must be 1..7",
        ),
        (lambda x, w, b: (x, w, b[:3]), ValueError, "bias must have shape (4,)"),
        (
            lambda x, w, b: (x.int(), w.int(), b.int()),
            TypeError,
            "x must be a floating-point tensor",
        ),
        (
            lambda x, w, b: (x, w.double(), b),
            TypeError,
            "weight dtype Double differs from x dtype Float",
        ),
        (lambda x, w, b: (x[:, :, :2], w, b), ValueError, "smaller than the kernel"),
    ],
)
def test_conv3d_block_rejects(mutate, error, message):
    with pytest.raises(error, match=message.replace("(", r"\(").replace(")", r"\)")):
        conv3d_block(*mutate(*conv_inputs()))


def test_conv3d_block_rejects_bad_options():
    x, w, b = conv_inputs()
    with pytest.raises(ValueError, match="pool must be None, 'avg' or 'max'"):
        conv3d_block(x, w, b, pool="mean")
    with pytest.raises(ValueError, match="padding must be a non-negative int"):
        conv3d_block(x, w, b, padding=-1)
    with pytest.raises(ValueError, match="padding must be a non-negative int"):
        conv3d_block(x, w, b, padding=(1, 1))
    with pytest.raises(ValueError, match="too small for 2x2x2 pooling"):
        conv3d_block(x[:, :, :3], w, b, pool="avg")


def cos_inputs():
    return torch.randn(5, 8), torch.randn(3, 8), torch.tensor(2.0), torch.tensor([0, 2, 1, 1, 0])


@pytest.mark.parametrize(
    ("mutate", "error", "message"),
    [
        (lambda f, e, s, t: (f[0], e, s, t), ValueError, "features must be 2-D"),
        (lambda f, e, s, t: (f, e[0], s, t), ValueError, "class_embeddings must be 2-D"),
        (
            lambda f, e, s, t: (f, e[:, :5], s, t),
            ValueError,
            "features have dimension 8 but class_embeddings have 5",
        ),
        (lambda f, e, s, t: (f, e, s.reshape(1), t), ValueError, "scale must be a 0-d tensor"),
        (
            lambda f, e, s, t: (f.long(), e.long(), s, t),
            TypeError,
            "features must be a floating-point tensor",
        ),
        (
            lambda f, e, s, t: (f, e.double(), s, t),
            TypeError,
            "class_embeddings dtype Double differs",
        ),
        (lambda f, e, s, t: (f, e, s, t[:4]), ValueError, r"target must have shape \(5,\)"),
        (lambda f, e, s, t: (f, e, s, t.float()), TypeError, "target must be int64"),
        (lambda f, e, s, t: (f, e, s, t + 1), ValueError, r"target\[1\] = 3 is out of range"),
        (lambda f, e, s, t: (f, e, s, t - 1), ValueError, r"target\[0\] = -1 is out of range"),
        (lambda f, e, s, t: (f, e[:0], s, t), ValueError, "at least one class"),
    ],
)
def test_alignment_loss_rejects(mutate, error, message):
    f, e, s, t = mutate(*cos_inputs())
    with pytest.raises(error, match=message):
        cosine_alignment_loss(f, e, t, s)


def test_cosine_rejects_bad_options():
    f, e, s, t = cos_inputs()
    with pytest.raises(ValueError, match="reduction must be 'mean', 'sum' or 'none'"):
        cosine_alignment_loss(f, e, t, s, reduction="avg")
    with pytest.raises(TypeError, match="scale must be a 0-d tensor or a number"):
        cosine_logits(f, e, "2")


@pytest.mark.skipif(not CUDA, reason="needs a CUDA GPU for a second device")
def test_tensors_on_different_devices_are_rejected():
    x, w, b = conv_inputs()
    with pytest.raises(ValueError, match="on the same device"):
        conv3d_block(x.cuda(), w, b)
    f, e, s, t = cos_inputs()
    with pytest.raises(ValueError, match="on the same device"):
        cosine_logits(f.cuda(), e, s.cuda())
    with pytest.raises(ValueError, match="on the same device"):
        cosine_alignment_loss(f.cuda(), e.cuda(), t, s.cuda())
