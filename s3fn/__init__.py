"""s3fn: hyperspectral image classification with label semantics (S3FN).

Subpackages: `s3fn.ops` (fused kernels), `s3fn.io` (file formats: readers, map writers),
`s3fn.data` (datasets, windows, splits), `s3fn.semantics` (class descriptions and text
embeddings), `s3fn.models`, `s3fn.train`, `s3fn.evaluate`, and `s3fn.inference` with
`s3fn.Classifier`, the inference bundle.
"""

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from s3fn.inference import Classifier

__version__ = "0.1.0"
__all__ = ["Classifier", "__version__"]


def __getattr__(name: str) -> object:
    """`s3fn.Classifier`, imported on first use (it pulls in torch and the data stack)."""
    if name == "Classifier":
        from s3fn.inference import Classifier

        return Classifier
    raise AttributeError(f"module 's3fn' has no attribute {name!r}")
