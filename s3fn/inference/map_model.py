"""The whole map model of one tile as a single module: raw radiometry in, probabilities out.

`TileMapModel` is what `predict_map` does to one tile after reading it (z-score + PCA, no
data at the training mean, the dense pass, the softmax, NaN at no-data pixels) with no NumPy
in between, so that `torch.export` and the ONNX exporter can capture it whole.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from s3fn.data.preprocess import Preprocessor
from s3fn.inference.dense import unsupported_reason
from s3fn.models.inputs import as_window


def halo(window: int | tuple[int, int]) -> tuple[int, int, int, int]:
    """(top, left, bottom, right): the pixels a tile needs around the ones it maps, as
    `predict_map` reads them (h // 2 above, h - 1 - h // 2 below; the same across)."""
    h, w = as_window(window)
    return h // 2, w // 2, h - 1 - h // 2, w - 1 - w // 2


class TileMapModel(nn.Module):
    """(1, B, H, W) float32 raw radiometry in the bundle's bands -> (1, K, H - h + 1,
    W - w + 1) class probabilities: output (r, c) is the window whose top-left corner is input
    (r, c), i.e. the pixel at input (r + top, c + left) of `halo(window)`.

    A pixel with a NaN band is no data: it enters the windows that reach it as the training
    mean (0 after the z-score and PCA) and gets NaN probabilities, as in `predict_map`.
    `dilated` runs the 3D-CNN's dense pass by dilated convolutions (any tile size; plain
    PyTorch ops) instead of shift and stitch (the fused ops; tiles whose output is a multiple
    of the model's `dense_stride` when traced with a dynamic size).
    """

    def __init__(
        self,
        model: nn.Module,
        preprocessor: Preprocessor,
        window: int | tuple[int, int],
        *,
        dilated: bool = False,
    ) -> None:
        super().__init__()
        reason = unsupported_reason(model)
        if reason is not None:
            raise ValueError(f"export: {reason}; only models that run densely export")
        weights, bias = preprocessor.float32_affine()
        self.model = model.eval()
        self.window = as_window(window)
        self.dilated = dilated
        self.n_bands = preprocessor.n_bands
        self.register_buffer("weight", torch.from_numpy(weights.T.copy())[..., None, None])
        self.register_buffer("bias", torch.from_numpy(bias))

    def forward(self, tile: torch.Tensor) -> torch.Tensor:
        """Probabilities (1, K, H - h + 1, W - w + 1) of a (1, B, H, W) tile."""
        h, w = self.window
        top, left, _, _ = halo(self.window)
        missing = torch.isnan(tile)
        nodata = missing.any(dim=1, keepdim=True)
        planes = F.conv2d(tile.masked_fill(missing, 0.0), self.weight, self.bias)
        planes = planes.masked_fill(nodata, 0.0)
        rows, cols = tile.shape[2] - h + 1, tile.shape[3] - w + 1
        features = self.model.dense_features(planes[0], self.window, dilated=self.dilated)
        logits = self.model.classify_features(features).float()
        probabilities = torch.softmax(logits, dim=1).reshape(rows, cols, -1).permute(2, 0, 1)
        centres = nodata[0, :, top : top + rows, left : left + cols]
        return probabilities.masked_fill(centres, float("nan"))[None]
