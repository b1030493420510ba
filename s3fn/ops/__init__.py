"""The fused operators of s3fn, with autograd and torch.compile support.

`s3fn.ops.reference` holds the pure-PyTorch definition of each op. `library_path()` is the
Python-free library that registers them, for a C++ host (`dlopen`) or a process without s3fn
(`torch.ops.load_library`).
"""

from s3fn._extension import load_extension
from s3fn._extension import ops_library_path as library_path

load_extension()

from s3fn.ops import reference  # noqa: E402
from s3fn.ops.conv3d_block import conv3d_block, fast_layout  # noqa: E402
from s3fn.ops.cosine import cosine_alignment_loss, cosine_logits  # noqa: E402

__all__ = [
    "conv3d_block",
    "cosine_alignment_loss",
    "cosine_logits",
    "fast_layout",
    "library_path",
    "reference",
]
