"""Models: the paper's spectral-spatial 3D-CNN, the S3FN semantic head, and baselines.

All take windows as N x 1 x C x h x w (or N x C x h x w); `config()` and `build_model` rebuild
an architecture. The 3D-CNN runs its conv blocks through the fused `s3fn.ops` kernels, or
through `s3fn.ops.reference` with `use_fused_ops=False`.
"""

from s3fn.models.base import WindowClassifier
from s3fn.models.baselines import SpectralMeanMLP
from s3fn.models.cnn import (
    NO_POOLS,
    PAPER_POOLS,
    SpectralSpatialCNN,
    conv_output_shape,
    minimum_input_size,
)
from s3fn.models.layers import Conv3dBlock
from s3fn.models.registry import (
    MODEL_TYPES,
    MODELS,
    ModelRequest,
    ModelSpec,
    build_model,
    get_model,
    list_models,
)
from s3fn.models.semantic import S3FN, TEMPERATURES

__all__ = [
    "MODELS",
    "MODEL_TYPES",
    "NO_POOLS",
    "PAPER_POOLS",
    "S3FN",
    "TEMPERATURES",
    "Conv3dBlock",
    "ModelRequest",
    "ModelSpec",
    "SpectralMeanMLP",
    "SpectralSpatialCNN",
    "WindowClassifier",
    "build_model",
    "conv_output_shape",
    "get_model",
    "list_models",
    "minimum_input_size",
]
