"""The CUDA sources compile where no GPU is: nvcc on every csrc/cuda/*.cu (no register
spills on sm_80 / sm_90), and a syntax check of the torch glue csrc/cuda/*_torch.cpp.

The compilations of one kind start together on the first test of that kind and run on
all cores; each parametrized test then waits for its own file.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sysconfig
import tempfile
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.cuda_tools import find_cuda_include, find_nvcc

ROOT = Path(__file__).resolve().parents[1]
CSRC = ROOT / "csrc"
CU_FILES = sorted((CSRC / "cuda").glob("*.cu"))
GLUE_FILES = sorted((CSRC / "cuda").glob("*_torch.cpp"))

# The defines torch's CUDAExtension passes to nvcc: the kernels must not rely on the
# implicit half / bfloat16 conversions and operators they switch off.
TORCH_NVCC_DEFINES = [
    "-D__CUDA_NO_HALF_OPERATORS__",
    "-D__CUDA_NO_HALF_CONVERSIONS__",
    "-D__CUDA_NO_BFLOAT16_CONVERSIONS__",
    "-D__CUDA_NO_HALF2_OPERATORS__",
]
NVCC_FLAGS = [
    "-std=c++17",
    "-O3",
    "--expt-relaxed-constexpr",
    *TORCH_NVCC_DEFINES,
    "-gencode=arch=compute_80,code=sm_80",
    "-gencode=arch=compute_90,code=sm_90",
    "-Xptxas",
    "-v",
]
SPILL = re.compile(r"(\d+) bytes spill stores, (\d+) bytes spill loads")
ENTRY = re.compile(r"Compiling entry function '([^']+)' for '(sm_\d+)'")


class _Batch:
    """Runs a list of commands on all cores, started together on first use."""

    def __init__(self) -> None:
        self._pool = ThreadPoolExecutor(max_workers=max(1, os.cpu_count() or 1))
        self._jobs: dict[str, dict[Path, Future]] = {}

    def run(self, kind: str, commands: dict[Path, list[str]], key: Path):
        if kind not in self._jobs:
            self._jobs[kind] = {
                path: self._pool.submit(
                    subprocess.run, cmd, capture_output=True, text=True, timeout=600
                )
                for path, cmd in commands.items()
            }
        return self._jobs[kind][key].result()

    def close(self) -> None:
        self._pool.shutdown(wait=True)


@pytest.fixture(scope="module")
def batch():
    b = _Batch()
    yield b
    b.close()


@pytest.fixture(scope="module")
def objdir():
    with tempfile.TemporaryDirectory(prefix="s3fn-nvcc-") as d:
        yield Path(d)


def spills(ptxas_output: str) -> list[str]:
    """'sm_90 kernel: N bytes spill stores, M bytes spill loads' for every spilling kernel."""
    found, entry = [], "?"
    for line in ptxas_output.splitlines():
        m = ENTRY.search(line)
        if m:
            entry = f"{m.group(2)} {m.group(1)}"
        m = SPILL.search(line)
        if m and (int(m.group(1)) or int(m.group(2))):
            found.append(f"{entry}: {m.group(0)}")
    return found


@pytest.mark.parametrize("source", CU_FILES, ids=[p.name for p in CU_FILES])
def test_cuda_source_compiles_without_spills(source: Path, batch: _Batch, objdir: Path):
    nvcc = find_nvcc()
    if nvcc is None:
        pytest.skip("nvcc not found (not on PATH, no $CUDA_HOME/bin/nvcc)")
    commands = {
        cu: [nvcc, *NVCC_FLAGS, "-I", str(CSRC), "-c", str(cu), "-o", str(objdir / f"{cu.stem}.o")]
        for cu in CU_FILES
    }
    result = batch.run("nvcc", commands, source)
    output = result.stdout + result.stderr
    assert result.returncode == 0, f"nvcc failed on {source.name}:\n{output}"
    spilled = spills(output)
    assert not spilled, f"register spills in {source.name}:\n" + "\n".join(spilled)
    assert "Compiling entry function" in output, f"ptxas -v printed nothing:\n{output}"


@pytest.mark.parametrize("source", GLUE_FILES, ids=[p.name for p in GLUE_FILES])
def test_torch_glue_type_checks(source: Path, batch: _Batch):
    gxx = shutil.which("g++")
    if gxx is None:
        pytest.skip("g++ not found")
    cpp_extension = pytest.importorskip("torch.utils.cpp_extension")
    cuda_include = find_cuda_include(find_nvcc())
    if cuda_include is None:
        pytest.skip("CUDA headers (cuda_runtime.h) not found; set CUDA_HOME")
    torch_includes = [Path(p) for p in cpp_extension.include_paths()]
    flags = ["-fsyntax-only", "-std=c++17", "-DS3FN_WITH_CUDA"]
    # CPU wheels of torch ship c10/cuda but not its generated cuda_cmake_macros.h
    # (it only defines a Windows export switch); CUDA wheels have it.
    if not any((p / "c10/cuda/impl/cuda_cmake_macros.h").is_file() for p in torch_includes):
        flags.append("-DC10_CUDA_NO_CMAKE_CONFIGURE_FILE")
    includes = [*torch_includes, CSRC, cuda_include, cuda_include / "cccl"]
    includes.append(Path(sysconfig.get_paths()["include"]))
    include_flags = [f"-I{p}" for p in includes]
    commands = {cpp: [gxx, *flags, *include_flags, str(cpp)] for cpp in GLUE_FILES}
    result = batch.run("g++", commands, source)
    assert result.returncode == 0, (
        f"g++ -fsyntax-only failed on {source.name}:\n{result.stdout}{result.stderr}"
    )
