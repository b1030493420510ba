"""Inference: the `Classifier` bundle, object voting, per-pixel and dense scene maps.

Nothing here imports `s3fn.train`: a larger system that only predicts loads this package alone.
"""

from s3fn.inference.bundle import CONFIG_FILE, RUN_BUNDLE_DIR, WEIGHTS_FILE, locate_bundle
from s3fn.inference.classifier import Classifier
from s3fn.inference.objects import ImagePrediction

__all__ = [
    "CONFIG_FILE",
    "RUN_BUNDLE_DIR",
    "WEIGHTS_FILE",
    "Classifier",
    "ImagePrediction",
    "locate_bundle",
]
