"""Loads the compiled extension s3fn._C, which registers the torch.ops.s3fn operators."""

from __future__ import annotations

import importlib
from types import ModuleType

import torch  # noqa: F401  (the extension links against libtorch, which must load first)

_BUILD_HINT = (
    "build it with `make build` or `pip install --no-build-isolation -e .` from the repository root"
)


def load_extension() -> ModuleType:
    """Import s3fn._C, with an error that says how to build it when it is missing."""
    try:
        return importlib.import_module("s3fn._C")
    except ImportError as exc:
        raise ImportError(
            f"the s3fn C++ extension s3fn._C is not importable ({exc}); {_BUILD_HINT}"
        ) from exc
