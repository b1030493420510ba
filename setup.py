"""Builds the extension s3fn._C: CPU kernels always, CUDA kernels where possible.

Environment switches:
  S3FN_FORCE_CUDA=1      build the CUDA kernels even where torch reports no GPU
  S3FN_CUDA_ARCHS="80;90" compute capabilities to compile for
"""

import os
import shutil
from pathlib import Path

import torch
from setuptools import setup
from torch.utils import cpp_extension

ROOT = Path(__file__).parent
CSRC = ROOT / "csrc"
GENERATED = ROOT / "build" / "generated"


def cuda_decision() -> tuple[bool, str]:
    """Whether to compile the CUDA kernels, and the reason to print in `s3fn info`."""
    if torch.version.cuda is None:
        return False, f"torch {torch.__version__} is a CPU build"
    if cpp_extension.CUDA_HOME is None or shutil.which("nvcc", path=_nvcc_path()) is None:
        return False, "nvcc was not found (set CUDA_HOME)"
    if os.environ.get("S3FN_FORCE_CUDA") == "1" or torch.cuda.is_available():
        return True, "built"
    return False, "no GPU visible at build time (set S3FN_FORCE_CUDA=1 to build anyway)"


def _nvcc_path() -> str:
    home = cpp_extension.CUDA_HOME
    return os.pathsep.join(filter(None, [home and str(Path(home) / "bin"), os.environ.get("PATH")]))


def cuda_archs() -> list[str]:
    raw = os.environ.get("S3FN_CUDA_ARCHS", "80;90")
    archs = [a.strip().replace(".", "") for a in raw.replace(",", ";").split(";") if a.strip()]
    if not archs or not all(a.isdigit() for a in archs):
        raise SystemExit(f"S3FN_CUDA_ARCHS={raw!r}: expected compute capabilities like '80;90'")
    return archs


def write_build_info(with_cuda: bool, reason: str, archs: list[str]) -> None:
    """Bakes what was compiled into a header, so `s3fn info` reports the binary's truth."""
    GENERATED.mkdir(parents=True, exist_ok=True)
    text = (
        "#pragma once\n"
        f"#define S3FN_BUILT_WITH_CUDA {int(with_cuda)}\n"
        f'#define S3FN_CUDA_STATUS "{reason}"\n'
        f'#define S3FN_CUDA_ARCHS "{";".join(archs) if with_cuda else ""}"\n'
        f'#define S3FN_BUILT_TORCH "{torch.__version__}"\n'
    )
    header = GENERATED / "s3fn_build_info.h"
    if not header.exists() or header.read_text() != text:
        header.write_text(text)


def extension() -> cpp_extension.CppExtension:
    with_cuda, reason = cuda_decision()
    archs = cuda_archs() if with_cuda else []
    write_build_info(with_cuda, reason, archs)

    sources = [str(p.relative_to(ROOT)) for p in sorted(CSRC.glob("*.cpp"))]
    sources += [str(p.relative_to(ROOT)) for p in sorted((CSRC / "cpu").glob("*.cpp"))]
    cxx_flags = ["-O3", "-fopenmp"]
    args = dict(
        name="s3fn._C",
        include_dirs=[str(GENERATED), str(CSRC)],
        extra_link_args=["-fopenmp", "-Wl,--strip-debug"],
    )
    if not with_cuda:
        return cpp_extension.CppExtension(
            sources=sources, extra_compile_args={"cxx": cxx_flags}, **args
        )
    cuda_dir = CSRC / "cuda"
    sources += [str(p.relative_to(ROOT)) for p in sorted(cuda_dir.glob("*.cpp"))]
    sources += [str(p.relative_to(ROOT)) for p in sorted(cuda_dir.glob("*.cu"))]
    gencode = [f"-gencode=arch=compute_{a},code=sm_{a}" for a in archs]
    nvcc_flags = ["-O3", "--expt-relaxed-constexpr", *gencode]
    return cpp_extension.CUDAExtension(
        sources=sources,
        extra_compile_args={"cxx": [*cxx_flags, "-DS3FN_WITH_CUDA"], "nvcc": nvcc_flags},
        **args,
    )


setup(
    ext_modules=[extension()],
    cmdclass={"build_ext": cpp_extension.BuildExtension.with_options(no_python_abi_suffix=True)},
)
