"""The fused operators of s3fn, with autograd and torch.compile support.

`s3fn.ops.reference` holds the pure-PyTorch definition of each op.
"""

from s3fn._extension import load_extension

load_extension()

from s3fn.ops import reference  # noqa: E402
from s3fn.ops.conv3d_block import conv3d_block, fast_layout  # noqa: E402
from s3fn.ops.cosine import cosine_alignment_loss, cosine_logits  # noqa: E402

__all__ = ["conv3d_block", "cosine_alignment_loss", "cosine_logits", "fast_layout", "reference"]
