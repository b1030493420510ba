"""pytest-benchmark timings of the s3fn ops on the CPU, each next to its eager PyTorch reference.

Not part of the test suite (pytest's testpaths is tests/, and benchmarks are disabled there):
    pytest benchmarks/test_bench_ops.py --benchmark-enable [--benchmark-group-by=param:case]
The batch is 16 (S3FN_BENCH_BATCH overrides) so that a run takes about a minute; the figures
against the issue's targets come from `python -m benchmarks.run`.
"""

from __future__ import annotations

import os

import pytest
import torch
import torch.nn.functional as F

import s3fn.ops as ops

BATCH = int(os.environ.get("S3FN_BENCH_BATCH", "16"))
BLOCKS = {
    "block1": ((BATCH, 1, 30, 32, 32), 32, "avg"),
    "block2": ((BATCH, 32, 14, 15, 15), 64, None),
    "block3": ((BATCH, 64, 12, 13, 13), 128, "avg"),
}
IMPLS = ["eager", "s3fn"]


def eager_block(x, w, b, pool):
    y = F.relu(F.conv3d(x, w, b))
    return F.avg_pool3d(y, 2) if pool else y


def fused_block(x, w, b, pool):
    return ops.conv3d_block(x, w, b, pool=pool)


def block_inputs(case: str, grad: bool):
    shape, c_out, pool = BLOCKS[case]
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(shape, generator=gen).requires_grad_(grad and shape[1] > 1)
    w = torch.randn(c_out, shape[1], 3, 3, 3, generator=gen) / (27 * shape[1]) ** 0.5
    b = torch.randn(c_out, generator=gen) / 10
    return x, w.requires_grad_(grad), b.requires_grad_(grad), pool


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("case", list(BLOCKS))
def test_block_forward(benchmark, case, impl):
    benchmark.group = f"{case} forward"
    x, w, b, pool = block_inputs(case, grad=False)
    fn = fused_block if impl == "s3fn" else eager_block
    out = benchmark(fn, x, w, b, pool)
    assert out.shape[1] == w.shape[0]


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("case", list(BLOCKS))
def test_block_forward_backward(benchmark, case, impl):
    benchmark.group = f"{case} forward+backward"
    x, w, b, pool = block_inputs(case, grad=True)
    fn = fused_block if impl == "s3fn" else eager_block
    leaves = [t for t in (x, w, b) if t.requires_grad]

    def step():
        y = fn(x, w, b, pool)
        return torch.autograd.grad(y, leaves, torch.ones_like(y))

    grads = benchmark(step)
    assert len(grads) == len(leaves)


@pytest.mark.parametrize("impl", IMPLS)
def test_cosine_alignment_loss_forward_backward(benchmark, impl):
    benchmark.group = "cosine_alignment_loss forward+backward"
    gen = torch.Generator().manual_seed(0)
    n, k, d = 256, 16, 1024
    f = torch.randn(n, d, generator=gen, requires_grad=True)
    e = torch.randn(k, d, generator=gen)
    t = torch.randint(0, k, (n,), generator=gen)
    fn = ops.cosine_alignment_loss if impl == "s3fn" else ops.reference.cosine_alignment_loss

    def step():
        return torch.autograd.grad(fn(f, e, t, 1.0), [f])

    (grad,) = benchmark(step)
    assert grad.shape == f.shape
