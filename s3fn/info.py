"""What this installation of s3fn was built with and runs on (`s3fn info`)."""

from __future__ import annotations

import platform

import torch

import s3fn
from s3fn._extension import load_extension, ops_library_path


def build_info() -> dict[str, object]:
    """Versions, the ops library (its path, what it was compiled with, the reason when CUDA is
    absent) and the thread count."""
    ext = load_extension()
    cuda_built = bool(ext.built_with_cuda)
    return {
        "s3fn": s3fn.__version__,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torch_cuda": torch.version.cuda,
        "extension_built_against_torch": ext.built_torch,
        "ops_library": str(ops_library_path()),
        "backends": ["cpu", "cuda"] if cuda_built else ["cpu"],
        "cuda_archs": ext.cuda_archs.split(";") if cuda_built else [],
        "cuda_status": ext.cuda_status,
        "cuda_available": torch.cuda.is_available(),
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "threads": torch.get_num_threads(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
    }


def format_info(info: dict[str, object]) -> str:
    """A human-readable block, one `key: value` per line."""
    backends = ", ".join(info["backends"])  # type: ignore[arg-type]
    cuda = (
        f"cuda (archs {', '.join(info['cuda_archs'])})"  # type: ignore[arg-type]
        if "cuda" in info["backends"]  # type: ignore[operator]
        else f"not built: {info['cuda_status']}"
    )
    lines = [
        f"s3fn {info['s3fn']}",
        f"python {info['python']}",
        f"torch {info['torch']} (CUDA {info['torch_cuda'] or 'none'}); "
        f"extension built against torch {info['extension_built_against_torch']}",
        f"ops library: {info['ops_library']}",
        f"backends: {backends}",
        f"cuda kernels: {cuda}",
        f"gpu: {info['gpu'] or 'none visible'}",
        f"threads: {info['threads']} (cpu capability {info['cpu_capability']})",
    ]
    return "\n".join(lines)
