"""Loads the ops library s3fn/libs3fn_ops.so, which registers the torch.ops.s3fn operators.

The library holds every schema and kernel and no Python; the Python module s3fn._C is linked
against it (rpath $ORIGIN), so importing s3fn._C loads it. Every path into the ops (`s3fn.ops`,
a bundle, `load_exported`, `load_aoti`) goes through `load_extension`, and the dynamic loader
maps one file once per process however often it is asked: the operators are registered once.
A C++ host loads the same file itself (`ops_library_path`); a second copy of the library in
one process would register the `s3fn` namespace twice, which aborts it.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from types import ModuleType

import torch  # noqa: F401  (the library links against libtorch, which must load first)

OPS_LIBRARY = "libs3fn_ops.so"
_BUILD_HINT = (
    "build it with `make build` or `pip install --no-build-isolation -e .` from the repository root"
)


def ops_library_path() -> Path:
    """The Python-free ops library of this installation, for `torch.ops.load_library` in a
    process without s3fn or `dlopen` in a C++ host."""
    return Path(__file__).with_name(OPS_LIBRARY)


def load_extension() -> ModuleType:
    """Import s3fn._C (loading the ops library), with an error that says how to build it when
    either is missing."""
    try:
        return importlib.import_module("s3fn._C")
    except ImportError as exc:
        raise ImportError(
            f"the s3fn C++ extension s3fn._C or its ops library {OPS_LIBRARY} is not "
            f"importable ({exc}); {_BUILD_HINT}"
        ) from exc
