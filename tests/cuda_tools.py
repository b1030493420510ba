"""Where the CUDA toolkit is, for the tests that compile CUDA sources without a GPU."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path


def find_nvcc() -> str | None:
    """nvcc on PATH, or under $CUDA_HOME / $CUDA_PATH."""
    found = shutil.which("nvcc")
    if found:
        return found
    home = os.environ.get("CUDA_HOME") or os.environ.get("CUDA_PATH")
    if home and (Path(home) / "bin" / "nvcc").is_file():
        return str(Path(home) / "bin" / "nvcc")
    return None


def find_cuda_include(nvcc: str | None) -> Path | None:
    """The folder holding cuda_runtime.h (nvcc may be a wrapper script, so ask it too)."""
    candidates = [
        Path(os.environ[v]) / "include" for v in ("CUDA_HOME", "CUDA_PATH") if os.environ.get(v)
    ]
    if nvcc:
        candidates.append(Path(nvcc).resolve().parent.parent / "include")
        try:
            dry = subprocess.run(
                [nvcc, "--dryrun", "-x", "cu", "-E", os.devnull],
                capture_output=True,
                text=True,
                timeout=60,
            )
            candidates += [Path(p) for p in re.findall(r'INCLUDES="-I([^"]+)"', dry.stderr)]
        except (OSError, subprocess.SubprocessError):
            pass
    candidates.append(Path("/usr/local/cuda/include"))
    return next((c for c in candidates if (c / "cuda_runtime.h").is_file()), None)
