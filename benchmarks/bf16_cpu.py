"""Whether bfloat16 would speed up blocks 2 and 3 on this CPU: oneDNN's convolution and a
matmul in float32 and bfloat16, in one process, interleaved.

    python -m benchmarks.bf16_cpu

bfloat16 pays off where the CPU multiplies it faster than float32 (AMX tiles, or
AVX512-BF16 dot products that outrun the float32 FMAs). The result decides whether a
`--precision bf16` CPU option is worth offering; it goes to
benchmarks/results/bf16_cpu-<machine>.json.
"""

from __future__ import annotations

import json
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F

from benchmarks.run import machine_info, machine_name

RESULTS = Path(__file__).parent / "results"
BATCH = 64
# (name, c_in, c_out, input depth, input side) of the backbone's oneDNN blocks at 32 px.
BLOCKS = (("block2", 32, 64, 14, 15), ("block3", 64, 128, 12, 13))
REPEATS = 7


def cpu_flags() -> list[str]:
    """The CPU's bfloat16-related feature flags (AMX, AVX512-BF16)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return []
    flags = next(line.split(":", 1)[1].split() for line in text.splitlines() if "flags" in line)
    return sorted(f for f in flags if f.startswith("amx") or "bf16" in f)


def median_ms(step: Callable[[], object]) -> float:
    step()
    times = []
    for _ in range(REPEATS):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    return 1e3 * statistics.median(times)


def conv_case(c_in: int, c_out: int, depth: int, side: int, dtype: torch.dtype) -> dict:
    """Forward and forward + backward of one channels-last 3x3x3 convolution + ReLU."""
    layout = torch.channels_last_3d
    x = torch.randn(BATCH, c_in, depth, side, side).to(dtype, memory_format=layout)
    w = (torch.randn(c_out, c_in, 3, 3, 3) / (27 * c_in) ** 0.5).to(dtype, memory_format=layout)
    x.requires_grad_()
    w.requires_grad_()

    def forward() -> None:
        with torch.no_grad():
            F.relu(F.conv3d(x, w))

    def forward_backward() -> None:
        y = F.relu(F.conv3d(x, w))
        torch.autograd.grad(y, [x, w], torch.ones_like(y))

    return {"fwd_ms": median_ms(forward), "fwd_bwd_ms": median_ms(forward_backward)}


def matmul_rate(dtype: torch.dtype, n: int = 2048) -> float:
    """GFLOP/s of an n x n matmul."""
    a, b = torch.randn(n, n).to(dtype), torch.randn(n, n).to(dtype)
    return 2 * n**3 / median_ms(lambda: a @ b) / 1e6


def main() -> dict:
    info = machine_info(torch.device("cpu"))
    result = {"machine": info, "cpu_bf16_flags": cpu_flags(), "batch": BATCH, "cases": {}}
    for name, c_in, c_out, depth, side in BLOCKS:
        f32 = conv_case(c_in, c_out, depth, side, torch.float32)
        bf16 = conv_case(c_in, c_out, depth, side, torch.bfloat16)
        result["cases"][name] = {
            "float32": f32,
            "bfloat16": bf16,
            "bf16_speedup_fwd_bwd": f32["fwd_bwd_ms"] / bf16["fwd_bwd_ms"],
        }
    result["matmul_gflops"] = {
        "float32": matmul_rate(torch.float32),
        "bfloat16": matmul_rate(torch.bfloat16),
    }
    print(json.dumps(result, indent=1))
    out = RESULTS / f"bf16_cpu-{machine_name(info)}.json"
    out.write_text(json.dumps(result, indent=1) + "\n")
    return result


if __name__ == "__main__":
    main()
