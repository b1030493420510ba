"""conv3d_block against its float64 PyTorch reference: values, gradients, gradcheck, opcheck."""

from __future__ import annotations

import random

import pytest
import torch

from s3fn.models import SpectralSpatialCNN
from s3fn.models.layers import Conv3dBlock
from s3fn.ops import conv3d_block, fast_layout, reference
from s3fn.ops._args import POOL_CODES
from s3fn.ops.conv3d_block import LIBRARY_MIN_CHANNELS
from tests.conftest import DEVICES, assert_close_to_reference, device_dtypes

POOLS = [None, "avg", "max"]


def random_config(rng: random.Random, kernel: tuple[int, int, int]) -> dict:
    """A random but valid conv3d_block call with the given kernel size."""
    pool = rng.choice(POOLS)
    padding = rng.choice([0, 1, 2, (rng.randint(0, 2), rng.randint(0, 2), rng.randint(0, 2))])
    pads = padding if isinstance(padding, tuple) else (padding,) * 3
    least = 2 if pool else 1  # conv output size s + 2p - k + 1 must hold one pooling window
    spatial = [
        max(1, k - 2 * p + least - 1) + rng.randint(0, 4) for k, p in zip(kernel, pads, strict=True)
    ]
    return dict(
        n=rng.choice([1, 3]),
        c_in=rng.choice([1, 2, 3, 5]),
        c_out=rng.choice([1, 4, 7, 9]),
        spatial=tuple(spatial),
        kernel=kernel,
        padding=padding,
        relu=rng.random() < 0.7,
        pool=pool,
        bias=rng.random() < 0.8,
    )


def sweep() -> list:
    """Every kernel size 1..7 in each dimension, mixed with random shapes, pads and epilogues."""
    rng = random.Random(1234)
    kernels = [(k, k, k) for k in range(1, 8)] + [(1, 7, 3), (7, 1, 2), (2, 5, 6), (3, 2, 1)]
    configs = [random_config(rng, kernel) for kernel in kernels for _ in range(3)]
    return [pytest.param(c, id=f"cfg{i}") for i, c in enumerate(configs)]


def make_inputs(cfg: dict, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(cfg["n"], cfg["c_in"], *cfg["spatial"], generator=gen, dtype=torch.float64)
    w = torch.randn(cfg["c_out"], cfg["c_in"], *cfg["kernel"], generator=gen, dtype=torch.float64)
    w /= (cfg["c_in"] * w[0, 0].numel()) ** 0.5
    b = torch.randn(cfg["c_out"], generator=gen, dtype=torch.float64) if cfg["bias"] else None
    return x, w, b


def call(fn, cfg, x, w, b):
    return fn(x, w, b, padding=cfg["padding"], relu=cfg["relu"], pool=cfg["pool"])


def reference_and_grads(cfg, x, w, b, grad_seed: int = 1):
    leaves = [t.clone().requires_grad_() for t in (x, w, b) if t is not None]
    out = call(reference.conv3d_block, cfg, *leaves, *([None] if b is None else []))
    grad_out = torch.randn(
        out.shape, generator=torch.Generator().manual_seed(grad_seed), dtype=out.dtype
    )
    grads = torch.autograd.grad(out, leaves, grad_out)
    return out.detach(), grad_out, grads


@pytest.mark.parametrize(("device", "dtype"), device_dtypes())
@pytest.mark.parametrize("cfg", sweep())
def test_matches_reference_in_value_and_gradient(cfg, device, dtype, poison_cuda_allocator):
    x, w, b = make_inputs(cfg)
    expected, grad_out, expected_grads = reference_and_grads(cfg, x, w, b)

    leaves = [t.to(device, dtype).requires_grad_() for t in (x, w, b) if t is not None]
    out = call(conv3d_block, cfg, *leaves, *([None] if b is None else []))
    assert out.shape == expected.shape and out.dtype == dtype
    assert_close_to_reference(out, expected, dtype)

    grads = torch.autograd.grad(out, leaves, grad_out.to(device, dtype))
    for got, want in zip(grads, expected_grads, strict=True):
        assert_close_to_reference(got, want, dtype, scale=max(1.0, want.abs().max().item()))


# The backbone's blocks on a 30-band 32x32 window: rows of 30, 13 and 11 conv outputs, so
# the kernels' whole-vector paths run (the sweep's rows are shorter than a vector), and
# blocks 2-3 take the library path in float32.
PAPER_BLOCKS = [
    pytest.param((1, 30, 32, 32), 32, id="block1"),
    pytest.param((32, 14, 15, 15), 64, id="block2"),
    pytest.param((64, 12, 13, 13), 128, id="block3"),
]


@pytest.mark.parametrize(("device", "dtype"), device_dtypes())
@pytest.mark.parametrize("pool", POOLS)
@pytest.mark.parametrize(("in_shape", "c_out"), PAPER_BLOCKS)
def test_paper_block_shapes(device, dtype, pool, in_shape, c_out):
    """Values and all three gradients at the paper's block shapes."""
    gen = torch.Generator().manual_seed(3)
    x = torch.rand(2, *in_shape, generator=gen, dtype=torch.float64)
    w = torch.randn(c_out, in_shape[0], 3, 3, 3, generator=gen, dtype=torch.float64)
    w /= (27 * in_shape[0]) ** 0.5
    b = torch.randn(c_out, generator=gen, dtype=torch.float64) / 10
    cfg = dict(padding=0, relu=True, pool=pool)
    expected, grad_out, expected_grads = reference_and_grads(cfg, x, w, b)
    leaves = [t.to(device, dtype).requires_grad_() for t in (x, w, b)]
    out = call(conv3d_block, cfg, *leaves)
    assert_close_to_reference(out, expected, dtype)
    grads = torch.autograd.grad(out, leaves, grad_out.to(device, dtype))
    for got, want in zip(grads, expected_grads, strict=True):
        assert_close_to_reference(got, want, dtype, scale=max(1.0, want.abs().max().item()))


@pytest.mark.parametrize("device", ["cpu"])
def test_non_contiguous_inputs(device):
    gen = torch.Generator().manual_seed(5)
    base = torch.randn(3, 9, 4, 8, 7, generator=gen, dtype=torch.float64)
    x = base.permute(0, 2, 1, 3, 4)[:, :, ::2]  # (3, 4, 5, 8, 7), strided
    w = torch.randn(6, 3, 4, 3, 3, generator=gen, dtype=torch.float64).transpose(
        1, 2
    )  # (6, 4, 3, 3, 3)
    b = torch.randn(12, generator=gen, dtype=torch.float64)[::2]
    assert not (x.is_contiguous() or w.is_contiguous() or b.is_contiguous())
    for pool in POOLS:
        expected = reference.conv3d_block(x, w, b, padding=1, pool=pool)
        torch.testing.assert_close(conv3d_block(x, w, b, padding=1, pool=pool), expected)


@pytest.mark.parametrize("pool", POOLS)
@pytest.mark.parametrize("relu", [True, False])
def test_gradcheck_float64(pool, relu):
    gen = torch.Generator().manual_seed(7)
    x = torch.randn(2, 2, 5, 6, 5, generator=gen, dtype=torch.float64, requires_grad=True)
    w = torch.randn(3, 2, 3, 2, 3, generator=gen, dtype=torch.float64, requires_grad=True)
    b = torch.randn(3, generator=gen, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(
        lambda x, w, b: conv3d_block(x, w, b, padding=(1, 0, 1), relu=relu, pool=pool), (x, w, b)
    )


def test_only_requested_gradients_are_computed():
    gen = torch.Generator().manual_seed(9)
    x = torch.randn(2, 2, 6, 6, 6, generator=gen, dtype=torch.float64)
    w = torch.randn(3, 2, 3, 3, 3, generator=gen, dtype=torch.float64, requires_grad=True)
    b = torch.randn(3, generator=gen, dtype=torch.float64)
    out = conv3d_block(x, w, b, pool="max")
    (grad_w,) = torch.autograd.grad(out.sum(), [w])
    wr = w.detach().clone().requires_grad_()
    (expected,) = torch.autograd.grad(reference.conv3d_block(x, wr, b, pool="max").sum(), [wr])
    torch.testing.assert_close(grad_w, expected)


def test_inference_mode_matches_training_output():
    gen = torch.Generator().manual_seed(11)
    x = torch.randn(2, 3, 7, 8, 9, generator=gen)
    w = torch.randn(5, 3, 3, 3, 3, generator=gen, requires_grad=True)
    for pool in POOLS:
        with_grad = conv3d_block(x, w, pool=pool)
        with torch.inference_mode():
            without = conv3d_block(x, w, pool=pool)
        torch.testing.assert_close(with_grad.detach(), without, rtol=0, atol=0)


@pytest.mark.parametrize("pool", [0, 1, 2])
def test_opcheck(pool):
    gen = torch.Generator().manual_seed(13)
    x = torch.randn(2, 2, 5, 6, 7, generator=gen, requires_grad=True)
    w = torch.randn(3, 2, 3, 3, 3, generator=gen, requires_grad=True)
    b = torch.randn(3, generator=gen, requires_grad=True)
    torch.library.opcheck(torch.ops.s3fn.conv3d_block, (x, w, b, [1, 1, 1], True, pool, True))
    # the inference path: no aux is saved, so no gradient is asked for
    args = (x.detach(), w.detach(), None, [0, 0, 0], False, pool, False)
    torch.library.opcheck(torch.ops.s3fn.conv3d_block, args)


@pytest.mark.parametrize("forced", [None, "direct", "library"])
@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("relu", [True, False])
@pytest.mark.parametrize("pool", POOLS)
@pytest.mark.parametrize("c_in", [15, 16])
def test_library_dispatch_threshold(c_in, pool, relu, device, forced, monkeypatch):
    """16+ input channels run the library convolution (oneDNN, cuDNN) + the fused epilogue
    (float32 on the CPU); 15 run the direct kernels; S3FN_CPU_CONV / S3FN_CUDA_CONV force one
    path. Every path must match the reference."""
    if forced is not None:
        monkeypatch.setenv("S3FN_CPU_CONV", forced)
        monkeypatch.setenv("S3FN_CUDA_CONV", forced)
    cfg = dict(
        n=2,
        c_in=c_in,
        c_out=5,
        spatial=(6, 7, 8),
        kernel=(3, 3, 3),
        padding=(1, 0, 1),
        relu=relu,
        pool=pool,
        bias=True,
    )
    x, w, b = make_inputs(cfg, seed=c_in)
    expected, grad_out, expected_grads = reference_and_grads(cfg, x, w, b)
    leaves = [t.to(device, torch.float32).requires_grad_() for t in (x, w, b)]
    out = call(conv3d_block, cfg, *leaves)
    assert_close_to_reference(out, expected, torch.float32)
    grads = torch.autograd.grad(out, leaves, grad_out.to(device, torch.float32))
    for got, want in zip(grads, expected_grads, strict=True):
        assert_close_to_reference(got, want, torch.float32, scale=max(1.0, want.abs().max().item()))


CL = torch.channels_last_3d
# (spatial, padding, c_out): conv sizes all even; all odd (pooling drops a trailing slice,
# row and column) with c_out over one vector and not a multiple of 8; padded, c_out under
# a vector.
CL_SHAPES = [
    pytest.param((6, 8, 10), 0, 16, id="even"),
    pytest.param((7, 9, 9), 0, 21, id="odd"),
    pytest.param((5, 6, 7), (1, 0, 1), 5, id="padded"),
]


def check_channels_last_call(cfg, dtype=torch.float32, seed=0):
    """conv3d_block on a channels-last x: values and all three gradients against the float64
    reference, output and grad_x channels-last."""
    x, w, b = make_inputs(cfg, seed=seed)
    expected, grad_out, expected_grads = reference_and_grads(cfg, x, w, b)
    xc = x.to(dtype).contiguous(memory_format=CL).requires_grad_()
    leaves = [xc] + [t.to(dtype).requires_grad_() for t in (w, b)]
    out = call(conv3d_block, cfg, *leaves)
    assert out.is_contiguous(memory_format=CL)
    assert_close_to_reference(out, expected, dtype)
    grads = torch.autograd.grad(out, leaves, grad_out.to(dtype))
    assert grads[0].is_contiguous(memory_format=CL)
    for got, want in zip(grads, expected_grads, strict=True):
        assert_close_to_reference(got, want, dtype, scale=max(1.0, want.abs().max().item()))


@pytest.mark.parametrize("isa", [None, "avx2", "generic"])
@pytest.mark.parametrize(("spatial", "padding", "c_out"), CL_SHAPES)
@pytest.mark.parametrize("relu", [True, False])
@pytest.mark.parametrize("pool", POOLS)
@pytest.mark.parametrize("c_in", [16, 32])
def test_channels_last_library_path(c_in, pool, relu, spatial, padding, c_out, isa, monkeypatch):
    """A channels-last x on the library path (oneDNN + the channels-last epilogues), with each
    instruction set's epilogues (S3FN_CPU_ISA narrows the one the CPU has)."""
    if isa is not None:
        monkeypatch.setenv("S3FN_CPU_ISA", isa)
    cfg = dict(
        n=2,
        c_in=c_in,
        c_out=c_out,
        spatial=spatial,
        kernel=(3, 3, 3),
        padding=padding,
        relu=relu,
        pool=pool,
        bias=True,
    )
    check_channels_last_call(cfg, seed=c_in + c_out)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("relu", [True, False])
@pytest.mark.parametrize("pool", POOLS)
@pytest.mark.parametrize("c_in", [4, 16])
def test_channels_last_direct_path(c_in, pool, relu, dtype, monkeypatch):
    """The direct kernels (c_in < 16, float64, or forced) take a channels-last x through NCDHW
    and give the output and grad_x back channels-last."""
    monkeypatch.setenv("S3FN_CPU_CONV", "direct")
    cfg = dict(
        n=2,
        c_in=c_in,
        c_out=9,
        spatial=(7, 6, 9),
        kernel=(3, 2, 3),
        padding=(0, 1, 0),
        relu=relu,
        pool=pool,
        bias=True,
    )
    check_channels_last_call(cfg, dtype, seed=c_in)


@pytest.mark.parametrize("pool", POOLS)
def test_channels_last_and_ncdhw_agree(pool):
    gen = torch.Generator().manual_seed(17)
    x = torch.randn(2, 32, 8, 9, 9, generator=gen)
    w = (torch.randn(24, 32, 3, 3, 3, generator=gen) / (27 * 32) ** 0.5).requires_grad_()
    b = (torch.randn(24, generator=gen) / 10).requires_grad_()
    results = []
    for fmt in (torch.contiguous_format, CL):
        xf = x.contiguous(memory_format=fmt).requires_grad_()
        out = conv3d_block(xf, w, b, pool=pool)
        grad_out = torch.randn(out.shape, generator=torch.Generator().manual_seed(1))
        results.append([out, *torch.autograd.grad(out, [xf, w, b], grad_out)])
    # float32 sums in another order: 1e-5 of the largest value apart
    for a, c in zip(*results, strict=True):
        scale = max(1.0, c.abs().max().item())
        torch.testing.assert_close(a, c, rtol=1e-5, atol=1e-5 * scale)


def expected_aux(x, w, b, relu, pool):
    """The aux of a channels-last x, from the float64 conv: the ReLU mask packed along channels
    (n, d_o, h_o, w_o, ceil(c_out / 8)), or the argmax (n, c_out, d_p, h_p, w_p)."""
    y = torch.nn.functional.conv3d(x.double(), w.double(), b.double())
    n, c, d, h, wd = y.shape
    if pool == "avg":
        bits = torch.zeros(n, d, h, wd, -(-c // 8) * 8, dtype=torch.int64)
        kept = torch.zeros_like(y, dtype=torch.bool)
        kept[:, :, : d // 2 * 2, : h // 2 * 2, : wd // 2 * 2] = True
        bits[..., :c] = ((y > 0) & kept).permute(0, 2, 3, 4, 1)
        weights = 2 ** torch.arange(8)
        return (bits.view(n, d, h, wd, -1, 8) * weights).sum(-1).to(torch.uint8)
    y = y.relu() if relu else y
    y = y[:, :, : d // 2 * 2, : h // 2 * 2, : wd // 2 * 2]
    windows = y.reshape(n, c, d // 2, 2, h // 2, 2, wd // 2, 2).permute(0, 1, 2, 4, 6, 3, 5, 7)
    return windows.reshape(n, c, d // 2, h // 2, wd // 2, 8).argmax(-1).to(torch.uint8)


@pytest.mark.parametrize(("pool", "relu"), [("avg", True), ("max", True), ("max", False)])
@pytest.mark.parametrize("c_in", [4, 16])
def test_channels_last_aux_layout(c_in, pool, relu):
    """aux of a channels-last x, on the direct (c_in 4) and library (c_in 16) paths. Integer
    inputs and a half-integer bias make every conv value exact and nonzero."""
    gen = torch.Generator().manual_seed(19)
    x = torch.randint(-3, 4, (2, c_in, 7, 8, 9), generator=gen).float()
    w = torch.randint(-2, 3, (19, c_in, 3, 3, 3), generator=gen).float()
    b = torch.randint(-4, 4, (19,), generator=gen).float() + 0.5
    xc = x.contiguous(memory_format=CL)
    _, aux = torch.ops.s3fn.conv3d_block(xc, w, b, [0, 0, 0], relu, POOL_CODES[pool], True)
    want = expected_aux(x, w, b, relu, pool)
    assert aux.shape == want.shape
    torch.testing.assert_close(aux, want, rtol=0, atol=0)
    if pool == "max":
        assert aux.is_contiguous(memory_format=CL)


def test_channels_last_mask_of_the_wrong_layout_is_refused():
    gen = torch.Generator().manual_seed(23)
    x = torch.randn(2, 16, 6, 7, 8, generator=gen).contiguous(memory_format=CL)
    w = torch.randn(5, 16, 3, 3, 3, generator=gen)
    out, _ = torch.ops.s3fn.conv3d_block(x, w, None, [0, 0, 0], True, 1, True)
    # the plane-packed mask of an NCDHW x
    _, ncdhw_aux = torch.ops.s3fn.conv3d_block(x.contiguous(), w, None, [0, 0, 0], True, 1, True)
    with pytest.raises(RuntimeError, match=r"aux \(the ReLU mask of a channels-last x"):
        torch.ops.s3fn.conv3d_block_backward(
            torch.randn(out.shape, generator=gen),
            x,
            w,
            out,
            ncdhw_aux,
            [0, 0, 0],
            True,
            1,
            [True, True, True],
        )


@pytest.mark.parametrize("pool", [0, 1, 2])
def test_opcheck_channels_last(pool):
    gen = torch.Generator().manual_seed(29)
    x = torch.randn(2, 16, 5, 6, 7, generator=gen).contiguous(memory_format=CL)
    w = torch.randn(3, 16, 3, 3, 3, generator=gen) / 10
    b = torch.randn(3, generator=gen)
    for t in (x, w, b):
        t.requires_grad_()
    torch.library.opcheck(torch.ops.s3fn.conv3d_block, (x, w, b, [1, 1, 1], True, pool, True))


def test_conv3d_block_layer_runs_wide_cpu_layers_channels_last():
    """Conv3dBlock hands the op a channels-last x where the CPU kernel runs oneDNN (float32,
    16+ input channels), and a backbone with such a block gives the reference's output."""
    torch.manual_seed(31)
    wide = Conv3dBlock(LIBRARY_MIN_CHANNELS, 8, pool="avg")
    narrow = Conv3dBlock(LIBRARY_MIN_CHANNELS - 1, 8, pool="avg")
    assert wide(torch.randn(2, LIBRARY_MIN_CHANNELS, 6, 6, 6)).is_contiguous(memory_format=CL)
    assert narrow(torch.randn(2, LIBRARY_MIN_CHANNELS - 1, 6, 6, 6)).is_contiguous()

    fused = SpectralSpatialCNN(14, 3, window=14, channels=(4, 16, 24), feature_dim=8)
    reference_model = SpectralSpatialCNN(
        14, 3, window=14, channels=(4, 16, 24), feature_dim=8, use_fused_ops=False
    )
    reference_model.load_state_dict(fused.state_dict())
    x = torch.randn(3, 14, 14, 14)
    torch.testing.assert_close(fused.eval()(x), reference_model.eval()(x), rtol=1e-4, atol=1e-5)


def test_fast_layout_follows_the_kernel_path(monkeypatch):
    """Channels-last exactly where the CPU kernel convolves in the library (oneDNN)."""
    monkeypatch.delenv("S3FN_CPU_CONV", raising=False)
    cl = torch.channels_last_3d
    wide, narrow = torch.randn(2, 16, 4, 5, 6), torch.randn(2, 15, 4, 5, 6)
    assert fast_layout(wide, 16).is_contiguous(memory_format=cl)
    assert fast_layout(narrow, 15) is narrow
    assert fast_layout(wide.double(), 16).is_contiguous()
    monkeypatch.setenv("S3FN_CPU_CONV", "direct")
    assert fast_layout(wide, 16) is wide
    monkeypatch.setenv("S3FN_CPU_CONV", "library")
    assert fast_layout(narrow, 15).is_contiguous(memory_format=cl)
