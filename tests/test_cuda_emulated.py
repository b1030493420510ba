"""The CUDA kernels' logic, run where no GPU is: each csrc/cuda/*.cu is compiled for the host
with tests/cuda_emulation/prelude.h (blocks run one after another on std::threads that share
the block's memory and meet at real barriers), an op's files are linked into one library with
its driver, as nvcc's objects are into the extension, and the kernels are checked against
float64 PyTorch, outputs poisoned before each call. It does not replace a run on a GPU (timing,
races between blocks and the hardware's own arithmetic are not emulated), but it catches wrong
indexing, missed writes and broken reductions in CI.
"""

from __future__ import annotations

import ctypes
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from tests.cuda_tools import find_cuda_include, find_nvcc

ROOT = Path(__file__).resolve().parents[1]
CUDA_SRC = ROOT / "csrc" / "cuda"
EMULATION = Path(__file__).resolve().parent / "cuda_emulation"
DTYPE_CODES = {torch.float32: 0, torch.float16: 1, torch.bfloat16: 2}
LAUNCH = re.compile(r"([A-Za-z_]\w*(?:<[^<>;]*>)?)\s*<<<(.*?)>>>\s*\((.*?)\);", re.S)
DYNAMIC_SMEM = re.compile(r"extern __shared__ float4 (\w+)\[\];")


def emulated_source(cu_file: Path) -> str:
    """The .cu source with its launches and dynamic shared memory rewritten for prelude.h."""
    src = LAUNCH.sub(
        lambda m: f"emu::launch2([&] {{ {m[1]}({m[3]}); }}, {m[2]});", cu_file.read_text()
    )
    src = DYNAMIC_SMEM.sub(r"float4* \1 = reinterpret_cast<float4*>(emu::dyn.data());", src)
    return '#include "prelude.h"\n' + src


def build(op: str, driver: str, workdir: Path) -> ctypes.CDLL:
    """The op's csrc/cuda/<op>*.cu, each emulated and compiled on its own, linked with driver."""
    gxx = shutil.which("g++")
    cuda_include = find_cuda_include(find_nvcc())
    if gxx is None or cuda_include is None:
        pytest.skip("needs g++ and the CUDA headers (cuda_fp16.h); set CUDA_HOME")
    sources = sorted(CUDA_SRC.glob(f"{op}*.cu"))
    assert sources, f"no csrc/cuda/{op}*.cu"
    out = workdir / op
    out.mkdir()
    emulated = [out / f"{cu.stem}.cpp" for cu in sources]
    for cu, cpp in zip(sources, emulated, strict=True):
        cpp.write_text(emulated_source(cu))
    lib = out / "lib.so"
    cmd = [
        gxx,
        "-std=c++20",
        "-O1",
        "-shared",
        "-fPIC",
        f"-I{cuda_include}",
        f"-I{CUDA_SRC}",
        f"-I{EMULATION}",
        str(EMULATION / driver),
        *map(str, emulated),
        "-o",
        str(lib),
        "-lpthread",
    ]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-4000:]
    return ctypes.CDLL(str(lib))


@pytest.fixture(scope="module")
def conv_lib(tmp_path_factory) -> ctypes.CDLL:
    lib = build("conv3d_block", "conv_driver.cpp", tmp_path_factory.mktemp("emu"))
    lib.conv_ws.restype = ctypes.c_size_t
    return lib


@pytest.fixture(scope="module")
def cos_lib(tmp_path_factory) -> ctypes.CDLL:
    lib = build("cosine_alignment", "cosine_driver.cpp", tmp_path_factory.mktemp("emu"))
    lib.loss_ws.restype = ctypes.c_size_t
    lib.bwd_ws.restype = ctypes.c_size_t
    return lib


def ptr(t: torch.Tensor | None) -> ctypes.c_void_p:
    return ctypes.c_void_p(t.data_ptr() if t is not None and t.numel() else 0)


def poisoned(shape, dtype) -> torch.Tensor:
    return torch.full(shape, float("nan"), dtype=dtype)


def assert_close(got: torch.Tensor, want: torch.Tensor, dtype: torch.dtype, what: str) -> None:
    """Max error relative to the largest reference value: 1e-4 in float32, 3e-2 below."""
    tol = 1e-4 if dtype == torch.float32 else 3e-2
    assert not torch.isnan(got.double()).any(), f"{what}: unwritten (NaN) elements"
    err = (got.double() - want).abs().max().item() / (want.abs().max().item() + 1e-6)
    assert err < tol, f"{what}: relative error {err:.3g} (tolerance {tol})"


def pool_of(y: torch.Tensor, pool: int) -> torch.Tensor:
    return F.avg_pool3d(y, 2) if pool == 1 else F.max_pool3d(y, 2) if pool == 2 else y


def argmax_offsets(y: torch.Tensor) -> torch.Tensor:
    """dz*4 + dy*2 + dx of each 2x2x2 window's maximum, as the kernels store it."""
    h_o, w_o = y.shape[3:]
    _, idx = F.max_pool3d(y, 2, return_indices=True)
    z, r, c = idx // (h_o * w_o), (idx // w_o) % h_o, idx % w_o
    pz, py, px = (
        torch.arange(s).view(shape)
        for s, shape in zip(idx.shape[2:], [(-1, 1, 1), (1, -1, 1), (1, 1, -1)], strict=True)
    )
    return ((z - 2 * pz) * 4 + (r - 2 * py) * 2 + (c - 2 * px)).to(torch.uint8)


def relu_mask(y: torch.Tensor) -> torch.Tensor:
    """1 where y > 0 inside the pooling windows, 0 elsewhere (the dropped edges too)."""
    d_o, h_o, w_o = y.shape[2:]
    m = (y > 0).to(torch.uint8)
    m[:, :, 2 * (d_o // 2) :] = 0
    m[:, :, :, 2 * (h_o // 2) :] = 0
    m[:, :, :, :, 2 * (w_o // 2) :] = 0
    return m


# (n, c_in, c_out, spatial, kernel, padding, relu, pool): odd sizes, partial tiles, padding
# past the kernel, channel counts off the blocking.
CONV_CASES = [
    (1, 1, 3, (6, 7, 9), (3, 3, 3), (0, 0, 0), True, 1),
    (2, 3, 5, (7, 9, 18), (3, 3, 3), (1, 1, 1), True, 2),
    (2, 2, 17, (5, 6, 7), (1, 2, 3), (0, 1, 3), False, 0),
    (1, 2, 3, (3, 4, 5), (1, 1, 1), (3, 2, 1), False, 1),
    (1, 20, 9, (4, 7, 9), (2, 3, 4), (1, 0, 2), True, 2),
]


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=str)
@pytest.mark.parametrize("case", CONV_CASES, ids=str)
def test_direct_conv_forward_and_backward(conv_lib, case, dtype):
    n, c_in, c_out, spatial, kernel, pad, relu, pool = case
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(n, c_in, *spatial, generator=gen, dtype=torch.float64).to(dtype)
    w = (torch.randn(c_out, c_in, *kernel, generator=gen, dtype=torch.float64) / 5).to(dtype)
    b = torch.randn(c_out, generator=gen, dtype=torch.float64).to(dtype)
    leaves = [t.double().requires_grad_() for t in (x, w, b)]
    y = F.conv3d(*leaves, padding=pad)
    want = pool_of(F.relu(y) if relu else y, pool)
    dims = (ctypes.c_int64 * 12)(n, c_in, *spatial, c_out, *kernel, *pad)

    out = poisoned(want.shape, dtype)
    aux = None
    if pool == 1 and relu:
        aux = torch.full(y.shape, 77, dtype=torch.uint8)
    elif pool == 2:
        aux = torch.full(want.shape, 77, dtype=torch.uint8)
    code = DTYPE_CODES[dtype]
    assert (
        conv_lib.conv_fwd(code, dims, pool, int(relu), ptr(x), ptr(w), ptr(b), ptr(out), ptr(aux))
        == 0
    )
    assert_close(out, want.detach(), dtype, "out")
    if pool == 1 and relu:
        ambiguous = y.detach().abs() < 1e-2  # low-precision sums may land on either side of 0
        assert ((aux == relu_mask(y.detach())) | ambiguous).all()
    if pool == 2 and dtype == torch.float32:
        assert torch.equal(aux, argmax_offsets(F.relu(y) if relu else y))

    grad_out = torch.randn(want.shape, generator=gen, dtype=torch.float64).to(dtype)
    want.backward(grad_out.double())
    ws_bytes = conv_lib.conv_ws(dims, pool, int(relu), 1, 1)
    ws = torch.empty(max(ws_bytes, 1), dtype=torch.uint8)
    grads = [poisoned(t.shape, dtype) for t in (x, w, b)]
    assert (
        conv_lib.conv_bwd(
            code,
            dims,
            pool,
            int(relu),
            ptr(grad_out),
            ptr(x),
            ptr(w),
            ptr(out),
            ptr(aux),
            *map(ptr, grads),
            ptr(ws),
            ctypes.c_size_t(ws_bytes),
        )
        == 0
    )
    for name, got, leaf in zip(("grad_x", "grad_w", "grad_b"), grads, leaves, strict=True):
        assert_close(got, leaf.grad, dtype, name)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16], ids=str)
@pytest.mark.parametrize("relu", [True, False])
@pytest.mark.parametrize("pool", [0, 1, 2])
@pytest.mark.parametrize("shape", [(2, 5, 6, 9, 7), (1, 16, 7, 6, 11)], ids=str)
def test_library_epilogue_and_grad_y(conv_lib, shape, pool, relu, dtype):
    """The epilogue on a conv output computed elsewhere (cuDNN) and the full g_y for its
    backward, against relu + pooling and their autograd in float64."""
    n, c_out, d_o, h_o, w_o = shape
    gen = torch.Generator().manual_seed(1)
    y = torch.randn(shape, generator=gen, dtype=torch.float64).to(dtype)
    y64 = y.double().requires_grad_()
    want = pool_of(F.relu(y64) if relu else y64, pool)
    dims = (ctypes.c_int64 * 12)(n, 1, d_o, h_o, w_o, c_out, 1, 1, 1, 0, 0, 0)
    out = poisoned(want.shape, dtype)
    aux = None
    if pool == 1 and relu:
        aux = torch.full(shape, 77, dtype=torch.uint8)
    elif pool == 2:
        aux = torch.full(want.shape, 77, dtype=torch.uint8)
    code = DTYPE_CODES[dtype]
    assert conv_lib.library_epilogue(code, dims, pool, int(relu), ptr(y), ptr(out), ptr(aux)) == 0
    assert_close(out, want.detach(), dtype, "out")
    if pool == 1 and relu:
        assert torch.equal(aux, relu_mask(y64.detach()))
    if pool == 2:
        assert torch.equal(aux, argmax_offsets(F.relu(y64) if relu else y64))

    grad_out = torch.randn(want.shape, generator=gen, dtype=torch.float64).to(dtype)
    want.backward(grad_out.double())
    gy = poisoned(shape, dtype)
    assert (
        conv_lib.grad_y(code, dims, pool, int(relu), ptr(grad_out), ptr(out), ptr(aux), ptr(gy))
        == 0
    )
    assert_close(gy, y64.grad, dtype, "g_y")


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=str)
@pytest.mark.parametrize("nkd", [(5, 3, 7), (70, 2, 33), (65, 33, 40), (130, 9, 17)], ids=str)
def test_cosine_logits_and_alignment_loss(cos_lib, nkd, dtype):
    n, k, d = nkd
    gen = torch.Generator().manual_seed(2)
    f = torch.randn(n, d, generator=gen, dtype=torch.float64).to(dtype)
    e = torch.randn(k, d, generator=gen, dtype=torch.float64).to(dtype)
    t = torch.randint(0, k, (n,), generator=gen)
    scale = torch.tensor(3.0)
    code, sizes = DTYPE_CODES[dtype], (ctypes.c_int64(n), ctypes.c_int64(k), ctypes.c_int64(d))

    def leaves():
        return [
            f.double().requires_grad_(),
            e.double().requires_grad_(),
            torch.tensor(3.0, dtype=torch.float64, requires_grad=True),
        ]

    def backward_buffers(loss: int):
        """Poisoned grad_f, grad_e, grad_scale and the workspace of one backward launcher."""
        ws_bytes = cos_lib.bwd_ws(*sizes, loss)
        grads = (poisoned((n, d), dtype), poisoned((k, d), dtype), poisoned((), torch.float32))
        return grads, torch.empty(max(ws_bytes, 1), dtype=torch.uint8), ws_bytes

    def assert_grads(grads, leaves, what: str) -> None:
        for name, got, leaf in zip(("grad_f", "grad_e", "grad_scale"), grads, leaves, strict=True):
            assert_close(got, leaf.grad, dtype, f"{what} {name}")

    fl, el, sl = leaves()
    cos = F.normalize(fl, dim=1) @ F.normalize(el, dim=1).T
    logits = poisoned((n, k), dtype)
    assert cos_lib.logits_fwd(code, *sizes, ptr(f), ptr(e), ptr(scale), ptr(logits)) == 0
    assert_close(logits, 3.0 * cos.detach(), dtype, "logits")
    g = torch.randn(n, k, generator=gen, dtype=torch.float64).to(dtype)
    (sl * cos).backward(g.double())
    (gf, ge, gs), ws, ws_bytes = backward_buffers(0)
    assert (
        cos_lib.logits_bwd(
            code,
            *sizes,
            ptr(g),
            ptr(f),
            ptr(e),
            ptr(scale),
            ptr(gf),
            ptr(ge),
            ptr(gs),
            ptr(ws),
            ctypes.c_size_t(ws_bytes),
        )
        == 0
    )
    assert_grads((gf, ge, gs), (fl, el, sl), "logits")

    for reduction in range(3):
        fl, el, sl = leaves()
        cos = F.normalize(fl, dim=1) @ F.normalize(el, dim=1).T
        want = F.cross_entropy(sl * cos, t, reduction=["none", "mean", "sum"][reduction])
        loss = poisoned((n,) if reduction == 0 else (), dtype)
        lse, cosv, norms = (
            poisoned((n,), torch.float32),
            poisoned((n, k), torch.float32),
            poisoned((n,), torch.float32),
        )
        ws_bytes = cos_lib.loss_ws(*sizes)
        ws = torch.full((ws_bytes,), 0xAB, dtype=torch.uint8)
        assert (
            cos_lib.loss_fwd(
                code,
                *sizes,
                ptr(f),
                ptr(e),
                ptr(t),
                ptr(scale),
                reduction,
                ptr(loss),
                ptr(lse),
                ptr(cosv),
                ptr(norms),
                ptr(ws),
                ctypes.c_size_t(ws_bytes),
            )
            == 0
        )
        assert_close(loss, want.detach(), dtype, f"loss ({reduction})")
        assert_close(lse, torch.logsumexp(sl * cos, 1).detach(), torch.float32, "lse")
        assert_close(cosv, cos.detach(), torch.float32, "cosines")
        assert_close(norms, fl.detach().norm(dim=1), torch.float32, "feature_norms")
        grad_loss = torch.randn(want.shape, generator=gen, dtype=torch.float64).to(dtype)
        want.backward(grad_loss.double())
        (gf, ge, gs), ws, ws_bytes = backward_buffers(1)
        assert (
            cos_lib.loss_bwd(
                code,
                *sizes,
                ptr(grad_loss),
                ptr(f),
                ptr(e),
                ptr(t),
                ptr(scale),
                ptr(lse),
                reduction,
                ptr(gf),
                ptr(ge),
                ptr(gs),
                ptr(ws),
                ctypes.c_size_t(ws_bytes),
            )
            == 0
        )
        assert_grads((gf, ge, gs), (fl, el, sl), f"loss ({reduction})")
