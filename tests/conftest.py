"""Shared fixtures: the devices and dtypes each op supports."""

from __future__ import annotations

import pytest
import torch

CUDA = torch.cuda.is_available()
# float32 results are checked against float64 at 1e-4: no TF32 in cuDNN's convolutions
# (the wide conv3d_block layers run there) or in matrix products.
torch.backends.cudnn.allow_tf32 = False
torch.backends.cuda.matmul.allow_tf32 = False
DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(not CUDA, reason="no CUDA GPU"))]

# float64 only on CPU (gradcheck); reduced precision only on CUDA.
DTYPES = {
    "cpu": [torch.float32, torch.float64],
    "cuda": [torch.float32, torch.float16, torch.bfloat16],
}

# (rtol, atol) of an op output against its float64 reference, per input dtype.
TOLERANCES = {
    torch.float64: (1e-10, 1e-10),
    torch.float32: (1e-4, 1e-4),
    torch.float16: (1e-2, 1e-2),
    torch.bfloat16: (5e-2, 5e-2),
}


def device_dtypes() -> list:
    """(device, dtype) pairs, CUDA ones skipped where no GPU is visible."""
    pairs = [pytest.param("cpu", dt, id=f"cpu-{str(dt)[6:]}") for dt in DTYPES["cpu"]]
    pairs += [
        pytest.param(
            "cuda",
            dt,
            id=f"cuda-{str(dt)[6:]}",
            marks=pytest.mark.skipif(not CUDA, reason="no CUDA GPU"),
        )
        for dt in DTYPES["cuda"]
    ]
    return pairs


def assert_close_to_reference(
    actual: torch.Tensor, expected64: torch.Tensor, dtype: torch.dtype, scale: float = 1.0
) -> None:
    """Compare an op result with its float64 reference, tolerances scaled by the values' size."""
    rtol, atol = TOLERANCES[dtype]
    torch.testing.assert_close(
        actual.double().cpu(), expected64.cpu(), rtol=rtol, atol=atol * scale
    )


@pytest.fixture
def poison_cuda_allocator():
    """Fill the CUDA caching allocator's free blocks with NaN, so unwritten outputs show."""
    if CUDA:
        large = torch.full((1 << 28,), float("nan"), device="cuda")
        small = [torch.full((1 << 17,), float("nan"), device="cuda") for _ in range(64)]
        del large, small
    yield
