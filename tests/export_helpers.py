"""The tiny bundles and tiles the export tests (ONNX, .pt2, AOTInductor) share."""

from __future__ import annotations

import warnings

import numpy as np
import torch

from s3fn.data import Cube, SceneDataset
from s3fn.data.splits import split_scene
from s3fn.inference import Classifier

NAMES = ["soil", "grass", "roof"]
SCENE_BANDS, OBJECT_BANDS = 18, 8
FAST = {"epochs": 1, "semantic_epochs": 1, "batch_size": 32, "compare_linear": False}
FAST |= {"refit": False, "channels": [2, 4, 4]}
EMBEDDINGS = torch.tensor([[1.0, 0.0, 0.2], [0.0, 1.0, 0.2], [0.3, 0.3, 1.0]])
SCENE_WINDOW = 15


def scene_cube(size: int = 40) -> tuple[np.ndarray, np.ndarray]:
    """Three vertical fields of distinct spectra, and a sparse label map of them."""
    rng = np.random.default_rng(0)
    fields = np.minimum(np.arange(size)[None, :] * 3 // size, 2).repeat(size, axis=0)
    spectra = rng.uniform(0.1, 0.9, (3, SCENE_BANDS))
    cube = spectra[fields] * rng.uniform(0.9, 1.1, (size, size, 1))
    cube += 0.03 * rng.normal(size=cube.shape)
    labels = np.where(rng.random((size, size)) < 0.3, fields + 1, 0)
    return cube.astype(np.float32), labels


def scene_dataset(cube: np.ndarray, labels: np.ndarray) -> tuple[SceneDataset, object]:
    """The scene with band centres and widths, and its split into training and validation
    blocks (no validation part to speak of on data this small: its warning is dropped)."""
    wavelengths = np.linspace(450.0, 950.0, SCENE_BANDS)
    scene = SceneDataset(Cube(cube, wavelengths, np.full(SCENE_BANDS, 30.0)), labels, NAMES)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        split = split_scene(labels, NAMES, SCENE_WINDOW, val=0.2, holdout="blocks", seed=0)
    return scene, split


def mosaic(cube: np.ndarray, rows: int, cols: int, seed: int) -> np.ndarray:
    """An unseen tile: pixels of `cube` shuffled, with noise, one pixel no data in every band
    and one in a single band."""
    rng = np.random.default_rng(seed)
    where = (
        rng.integers(cube.shape[0], size=(rows, cols)),
        rng.integers(cube.shape[1], size=(rows, cols)),
    )
    picked = cube[where]
    tile = (picked + 0.02 * rng.standard_normal(picked.shape)).astype(np.float32)
    tile[rows // 2, cols // 3] = np.nan
    tile[rows // 3, cols // 2, 1] = np.nan
    return tile


def probabilities(classifier: Classifier, cube: np.ndarray) -> np.ndarray:
    """predict_map's probabilities as (1, K, H, W), the artefact's layout."""
    return classifier.predict_map(cube, return_probabilities=True)[1].transpose(2, 0, 1)[None]


def as_input(cube: np.ndarray) -> np.ndarray:
    """An H x W x B cube as the artefact's (1, B, H, W) input."""
    return np.ascontiguousarray(cube.transpose(2, 0, 1)[None])
