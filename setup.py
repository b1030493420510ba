"""Builds the ops library s3fn/libs3fn_ops.so and the Python module s3fn._C.

The library holds every operator schema and kernel (CPU always, CUDA where possible) and
links libtorch only, no Python: a C++ host loads it to run exported models. s3fn._C is a
thin Python module linked against it (rpath $ORIGIN), so importing s3fn._C loads the library
and the operators are registered by that one library, once per process.

Environment switches:
  S3FN_FORCE_CUDA=1      build the CUDA kernels even where torch reports no GPU
  S3FN_CUDA_ARCHS="80;90" compute capabilities to compile for
"""

import os
import shutil
from pathlib import Path

import torch
from setuptools import Extension, setup
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


OPS_LIBRARY = "s3fn.libs3fn_ops"  # built as s3fn/libs3fn_ops.so
MODULE = "s3fn._C"


def _relative(paths) -> list[str]:
    return [str(p.relative_to(ROOT)) for p in sorted(paths)]


def ops_library() -> cpp_extension.CppExtension:
    """The schemas (ops.cpp), the build facts and the CPU kernels, plus the CUDA kernels and
    their torch glue where CUDA is built; linked against libtorch but not libtorch_python."""
    with_cuda, reason = cuda_decision()
    archs = cuda_archs() if with_cuda else []
    write_build_info(with_cuda, reason, archs)

    sources = _relative(p for p in CSRC.glob("*.cpp") if p.name != "module.cpp")
    sources += _relative((CSRC / "cpu").glob("*.cpp"))
    cxx_flags = ["-O3", "-fopenmp"]
    args = dict(
        name=OPS_LIBRARY,
        include_dirs=[str(GENERATED), str(CSRC)],
        extra_link_args=["-fopenmp", "-Wl,--strip-debug", "-Wl,-soname,libs3fn_ops.so"],
    )
    if not with_cuda:
        library = cpp_extension.CppExtension(
            sources=sources, extra_compile_args={"cxx": cxx_flags}, **args
        )
    else:
        sources += _relative((CSRC / "cuda").glob("*.cpp"))
        sources += _relative((CSRC / "cuda").glob("*.cu"))
        gencode = [f"-gencode=arch=compute_{a},code=sm_{a}" for a in archs]
        library = cpp_extension.CUDAExtension(
            sources=sources,
            extra_compile_args={
                "cxx": [*cxx_flags, "-DS3FN_WITH_CUDA"],
                "nvcc": ["-O3", "--expt-relaxed-constexpr", *gencode],
            },
            **args,
        )
    # torch's helpers add libtorch_python, which needs libpython: a C++ host could not load it.
    library.libraries = [name for name in library.libraries if name != "torch_python"]
    return library


def python_module() -> Extension:
    """s3fn._C: module.cpp alone, linked against the ops library found beside it. DT_RPATH
    (not RUNPATH) so that LD_LIBRARY_PATH cannot slip in another copy of the library."""
    return Extension(
        MODULE,
        sources=["csrc/module.cpp"],
        include_dirs=[str(CSRC)],
        depends=["csrc/build_info.h"],
        libraries=["s3fn_ops"],
        extra_link_args=["-Wl,-rpath,$ORIGIN", "-Wl,--disable-new-dtags", "-Wl,--strip-debug"],
        language="c++",
    )


class BuildExtension(cpp_extension.BuildExtension.with_options(no_python_abi_suffix=True)):
    """torch's build_ext, linking s3fn._C against the ops library it has just built (the
    library comes first in ext_modules; --inplace copies both into s3fn/ afterwards)."""

    def build_extension(self, ext: Extension) -> None:
        if ext.name == MODULE:
            built = Path(self.get_ext_fullpath(OPS_LIBRARY)).parent
            ext.library_dirs = [str(built), *ext.library_dirs]
        super().build_extension(ext)


setup(
    ext_modules=[ops_library(), python_module()],
    cmdclass={"build_ext": BuildExtension},
)
