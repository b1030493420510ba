"""A random S3FN classifier on a small cube's bands, for tests of the map paths."""

from __future__ import annotations

import numpy as np
import torch

from s3fn.data import Preprocessor
from s3fn.inference import Classifier
from s3fn.models import NO_POOLS, S3FN, SpectralSpatialCNN

CLASSES = ["a", "b", "c"]
SMALL = {"channels": (3, 4, 4), "feature_dim": 12, "hidden_dim": 8}


def random_classifier(window: int, *, pools=NO_POOLS, padding: int = 0) -> Classifier:
    """A random S3FN on 9 bands (16 where pooled: the pools need 14 components)."""
    torch.manual_seed(window)
    rng = np.random.default_rng(window)
    components = 14 if pools[0] else 7
    preprocessor = Preprocessor.fit(
        rng.random((300, components + 2)) + 0.1, n_components=components
    )
    cnn = SpectralSpatialCNN(
        components, 3, window=window, pools=pools, padding=padding, spectral_branch=True, **SMALL
    )
    model = S3FN(cnn, torch.randn(3, 5), temperature="learnable", init_scale=5.0)
    return Classifier(model, preprocessor, CLASSES, window=window, kind="scene")
