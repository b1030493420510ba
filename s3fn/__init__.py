"""s3fn: hyperspectral image classification with label semantics (S3FN).

Subpackages: `s3fn.ops` (fused kernels), `s3fn.data` (readers, windows, splits),
`s3fn.semantics` (class descriptions and text embeddings).
"""

__version__ = "0.1.0"
