"""cosine_logits and cosine_alignment_loss against their float64 references."""

from __future__ import annotations

import pytest
import torch

from s3fn.ops import cosine_alignment_loss, cosine_logits, reference
from tests.conftest import assert_close_to_reference, device_dtypes

SHAPES = [(1, 1, 1), (5, 3, 7), (33, 16, 100), (256, 16, 1024), (70, 2, 385), (9, 101, 64)]
REDUCTIONS = ["mean", "sum", "none"]


def make_inputs(n: int, k: int, d: int, seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    f = torch.randn(n, d, generator=gen, dtype=torch.float64) * 3
    e = torch.randn(k, d, generator=gen, dtype=torch.float64)
    s = torch.tensor(1.0 + 9.0 * torch.rand((), generator=gen).item(), dtype=torch.float64)
    t = torch.randint(0, k, (n,), generator=gen)
    return f, e, s, t


def grads_of(fn, inputs, grad_out_seed: int = 1):
    leaves = [t.clone().requires_grad_() for t in inputs]
    out = fn(*leaves)
    g = torch.randn(
        out.shape, generator=torch.Generator().manual_seed(grad_out_seed), dtype=torch.float64
    )
    return out.detach(), g, torch.autograd.grad(out, leaves, g.to(out.dtype))


@pytest.mark.parametrize(("device", "dtype"), device_dtypes())
@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_cosine_logits_value_and_gradient(shape, device, dtype, poison_cuda_allocator):
    f, e, s, _ = make_inputs(*shape)
    expected, g, expected_grads = grads_of(reference.cosine_logits, (f, e, s))
    leaves = [t.to(device, dtype).requires_grad_() for t in (f, e, s)]
    out = cosine_logits(*leaves)
    assert out.shape == expected.shape and out.dtype == dtype
    assert_close_to_reference(out, expected, dtype, scale=s.item())
    grads = torch.autograd.grad(out, leaves, g.to(device, dtype))
    for got, want in zip(grads, expected_grads, strict=True):
        assert_close_to_reference(got, want, dtype, scale=max(1.0, want.abs().max().item()))


@pytest.mark.parametrize(("device", "dtype"), device_dtypes())
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_alignment_loss_value_and_gradient(shape, reduction, device, dtype, poison_cuda_allocator):
    f, e, s, t = make_inputs(*shape)

    def ref(f, e, s):
        return reference.cosine_alignment_loss(f, e, t, s, reduction=reduction)

    expected, g, expected_grads = grads_of(ref, (f, e, s))
    leaves = [x.to(device, dtype).requires_grad_() for x in (f, e, s)]
    loss = cosine_alignment_loss(*leaves[:2], t.to(device), leaves[2], reduction=reduction)
    assert loss.shape == expected.shape and loss.dtype == dtype
    assert_close_to_reference(loss, expected, dtype, scale=max(1.0, expected.abs().max().item()))
    grads = torch.autograd.grad(loss, leaves, g.to(device, dtype))
    for got, want in zip(grads, expected_grads, strict=True):
        assert_close_to_reference(got, want, dtype, scale=max(1.0, want.abs().max().item()))


def test_rows_below_the_normalisation_clamp():
    """A zero feature row and a tiny class embedding take F.normalize's eps branch."""
    f, e, s, t = make_inputs(6, 4, 10)
    f[2] = 0.0
    e[1] *= 1e-14
    for fn, ref in [
        (lambda f, e, s: cosine_logits(f, e, s), reference.cosine_logits),
        (
            lambda f, e, s: cosine_alignment_loss(f, e, t, s, reduction="sum"),
            lambda f, e, s: reference.cosine_alignment_loss(f, e, t, s, reduction="sum"),
        ),
    ]:
        expected, _g, expected_grads = grads_of(ref, (f, e, s))
        out, _, grads = grads_of(fn, (f, e, s))
        torch.testing.assert_close(out, expected)
        for got, want in zip(grads, expected_grads, strict=True):
            torch.testing.assert_close(got, want, rtol=1e-9, atol=1e-9 * want.abs().max().item())


def test_gradcheck_float64():
    f, e, s, t = make_inputs(7, 5, 6)
    inputs = tuple(x.clone().requires_grad_() for x in (f, e, s))
    assert torch.autograd.gradcheck(cosine_logits, inputs)
    for reduction in REDUCTIONS:
        assert torch.autograd.gradcheck(
            lambda f, e, s, r=reduction: cosine_alignment_loss(f, e, t, s, reduction=r), inputs
        )


def test_scale_may_be_a_number_and_int32_targets_work():
    f, e, _s, t = make_inputs(8, 3, 5)
    expected = reference.cosine_alignment_loss(f, e, t, 2.5)
    torch.testing.assert_close(cosine_alignment_loss(f, e, t.int(), 2.5), expected)
    torch.testing.assert_close(cosine_logits(f, e, 2.5), reference.cosine_logits(f, e, 2.5))


def test_float32_scale_with_float64_features_keeps_scale_dtype_for_its_gradient():
    f, e, _, t = make_inputs(4, 3, 5)
    s = torch.tensor(3.0, requires_grad=True)
    cosine_alignment_loss(f, e, t, s).backward()
    assert s.grad is not None and s.grad.dtype == torch.float32
    s64 = torch.tensor(3.0, dtype=torch.float64, requires_grad=True)
    reference.cosine_alignment_loss(f, e, t, s64).backward()
    torch.testing.assert_close(s.grad.double(), s64.grad, rtol=1e-6, atol=1e-9)


def test_opcheck():
    f, e, s, t = make_inputs(6, 4, 9)
    args = [x.float().requires_grad_() for x in (f, e, s)]
    torch.library.opcheck(torch.ops.s3fn.cosine_logits, tuple(args))
    for code in range(3):
        torch.library.opcheck(
            torch.ops.s3fn.cosine_alignment_loss, (args[0], args[1], t, args[2], code)
        )


@pytest.mark.parametrize("threads", [1, 3])
def test_row_slices_across_threads_match_the_reference(threads):
    """Large calls split the feature rows into one slice per thread, each with its own
    share of the embedding gradient; the sum over slices must equal the reference."""
    f, e, s, t = make_inputs(301, 16, 1024, seed=3)
    f[300] = 0.0  # the clamp branch in the last slice
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        for fn, ref in [
            (cosine_logits, reference.cosine_logits),
            (
                lambda f, e, s: cosine_alignment_loss(f, e, t, s, reduction="none"),
                lambda f, e, s: reference.cosine_alignment_loss(f, e, t, s, reduction="none"),
            ),
        ]:
            expected, g, expected_grads = grads_of(ref, (f, e, s))
            leaves = [x.clone().requires_grad_() for x in (f, e, s)]
            out = fn(*leaves)
            torch.testing.assert_close(out, expected, rtol=1e-12, atol=1e-12)
            for got, want in zip(torch.autograd.grad(out, leaves, g), expected_grads, strict=True):
                torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-10 * want.abs().max())
    finally:
        torch.set_num_threads(before)


@pytest.mark.parametrize(("device", "dtype"), device_dtypes())
def test_loss_returns_what_its_backward_keeps(device, dtype):
    """Besides the loss, the op returns the log-sum-exps, the cosines and the raw feature
    norms, in the accumulation dtype; a zero row keeps its true norm 0."""
    f, e, s, t = make_inputs(37, 5, 70, seed=4)
    f[3] = 0.0
    _, lse, cos, norms = torch.ops.s3fn.cosine_alignment_loss(
        f.to(device, dtype), e.to(device, dtype), t.to(device), s.to(device, dtype), 0
    )
    acc = torch.float64 if dtype == torch.float64 else torch.float32
    assert lse.dtype == cos.dtype == norms.dtype == acc
    want_cos = torch.nn.functional.normalize(f, dim=1) @ torch.nn.functional.normalize(e, dim=1).T
    assert_close_to_reference(cos, want_cos, acc)
    assert_close_to_reference(norms, f.norm(dim=1), acc, scale=f.norm(dim=1).max().item())
    assert_close_to_reference(lse, torch.logsumexp(s * want_cos, dim=1), acc, scale=s.item())


def test_backward_refuses_saved_tensors_of_another_call():
    f, e, s, t = make_inputs(6, 4, 9)
    _, lse, cos, norms = torch.ops.s3fn.cosine_alignment_loss(f, e, t, s, 1)
    g = torch.tensor(1.0, dtype=torch.float64)
    backward = torch.ops.s3fn.cosine_alignment_loss_backward
    with pytest.raises(ValueError, match="cosines must be"):
        backward(g, f, e, t, s, lse, cos[:, :3], norms, 1)
    with pytest.raises(ValueError, match="feature_norms must be"):
        backward(g, f, e, t, s, lse, cos, norms.float(), 1)
    with pytest.raises(ValueError, match="lse must be"):
        backward(g, f, e, t, s, lse[:5], cos, norms, 1)
