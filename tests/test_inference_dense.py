"""Dense scene inference against the per-window path: same probabilities, same labels."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from s3fn.data.windows import WindowCutter
from s3fn.inference.dense import _tiles, dense_probabilities, supports_dense
from s3fn.models import NO_POOLS, PAPER_POOLS, S3FN, SpectralMeanMLP, SpectralSpatialCNN

from .conftest import DEVICES

SMALL = {"channels": (4, 4, 4), "feature_dim": 16, "hidden_dim": 8}


def scene(height: int, width: int, bands: int, seed: int = 0) -> np.ndarray:
    """A random H x W x C preprocessed cube (no zeros)."""
    rng = np.random.default_rng(seed)
    return rng.standard_normal((height, width, bands)).astype(np.float32) + 0.5


def padded_planes(image: np.ndarray, window: tuple[int, int]) -> torch.Tensor:
    """C x (H + h - 1) x (W + w - 1): the cube reflect-padded as `WindowCutter.at_centres`."""
    h, w = window
    planes = np.moveaxis(image, 2, 0)
    pad = ((0, 0), (h // 2, h - h // 2 - 1), (w // 2, w - w // 2 - 1))
    return torch.from_numpy(np.ascontiguousarray(np.pad(planes, pad, mode="reflect")))


def per_window(model: nn.Module, image: np.ndarray, window: tuple[int, int]) -> torch.Tensor:
    """H x W x K probabilities of the window centred on every pixel, one window at a time."""
    height, width = image.shape[:2]
    windows = WindowCutter(image, window).at_centres(np.argwhere(np.ones((height, width))))
    model.eval()
    with torch.no_grad():
        logits = model(torch.from_numpy(windows))
    return torch.softmax(logits.float(), dim=1).view(height, width, -1)


def assert_agree(dense: torch.Tensor, reference: torch.Tensor) -> None:
    """Probabilities within 1e-4; labels equal wherever the top two differ by more than 1e-4."""
    assert dense.dtype == torch.float32
    assert dense.shape == reference.shape
    torch.testing.assert_close(dense.cpu(), reference, rtol=0, atol=1e-4)
    top2 = reference.topk(2, dim=-1).values
    clear = top2[..., 0] - top2[..., 1] > 1e-4
    assert clear.float().mean() > 0.5  # the label check is not vacuous
    assert torch.equal(dense.cpu().argmax(-1)[clear], reference.argmax(-1)[clear])


def check_model(
    model: nn.Module,
    image: np.ndarray,
    window: tuple[int, int],
    **kwargs,
) -> torch.Tensor:
    dense = dense_probabilities(model, padded_planes(image, window), window, **kwargs)
    assert_agree(dense, per_window(model, image, window))
    return dense


CNN_CASES = [
    # window, bands, pools, spectral branch, scene height x width, channels
    pytest.param((7, 7), 9, NO_POOLS, False, (9, 13), (4, 4, 4), id="7-nopool"),
    pytest.param((8, 8), 10, NO_POOLS, True, (10, 7), (4, 4, 4), id="8-nopool-spectral"),
    pytest.param((7, 8), 9, NO_POOLS, True, (11, 9), (4, 4, 4), id="7x8-nopool-spectral"),
    pytest.param((15, 15), 14, PAPER_POOLS, False, (13, 10), (4, 4, 4), id="15-paper"),
    pytest.param((15, 15), 16, NO_POOLS, True, (9, 18), (4, 4, 4), id="15-nopool-spectral"),
    pytest.param((16, 16), 15, PAPER_POOLS, True, (11, 14), (4, 4, 4), id="16-paper-spectral"),
    pytest.param((16, 15), 14, PAPER_POOLS, False, (10, 11), (4, 4, 4), id="16x15-paper"),
    # c_in >= 16 in block 3: the fused op's library path
    pytest.param((16, 16), 14, PAPER_POOLS, True, (9, 10), (8, 16, 16), id="16-paper-wide"),
    pytest.param((32, 32), 14, PAPER_POOLS, True, (18, 21), (4, 4, 4), id="32-paper-spectral"),
]


@pytest.mark.parametrize(("window", "bands", "pools", "spectral", "size", "channels"), CNN_CASES)
def test_cnn_matches_per_window(window, bands, pools, spectral, size, channels):
    torch.manual_seed(1)
    model = SpectralSpatialCNN(
        bands,
        5,
        window=window,
        pools=pools,
        spectral_branch=spectral,
        channels=channels,
        feature_dim=16,
        hidden_dim=8,
    )
    assert supports_dense(model)
    check_model(model, scene(*size, bands), window)


@pytest.mark.parametrize(("window", "bands", "pools", "spectral", "size", "channels"), CNN_CASES)
def test_dilated_pass_matches_shift_and_stitch(window, bands, pools, spectral, size, channels):
    """The pass the ONNX export traces (any tile size) gives the features of the fused one."""
    torch.manual_seed(0)
    model = SpectralSpatialCNN(
        bands, 3, window=window, pools=pools, spectral_branch=spectral, channels=channels
    ).eval()
    planes = padded_planes(scene(*size, bands), window)
    with torch.no_grad():
        stitched = model.dense_features(planes, window)
        dilated = model.dense_features(planes, window, dilated=True)
    assert dilated.shape == (size[0] * size[1], model.feature_dim)
    torch.testing.assert_close(dilated, stitched, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(
    ("window", "size"),
    [pytest.param(15, (8, 9), id="15"), pytest.param(32, (17, 18), id="32")],
)
def test_paper_sized_cnn_matches_per_window(window, size):
    torch.manual_seed(10)
    model = SpectralSpatialCNN(30, 8, window=window, spectral_branch=True)
    check_model(model, scene(*size, 30, seed=9), (window, window))


@pytest.mark.parametrize("temperature", ["fixed", "learnable"])
def test_s3fn_matches_per_window(temperature):
    torch.manual_seed(2)
    backbone = SpectralSpatialCNN(14, 4, window=15, spectral_branch=True, **SMALL)
    model = S3FN(backbone, torch.randn(4, 24), temperature=temperature, init_scale=10.0)
    if temperature == "learnable":
        with torch.no_grad():
            model.log_scale.fill_(2.5)
    assert supports_dense(model)
    check_model(model, scene(13, 9, 14, seed=3), (15, 15))


def test_spectral_mean_mlp_alone_and_in_s3fn():
    torch.manual_seed(3)
    mlp = SpectralMeanMLP(12, 6)
    assert supports_dense(mlp)
    image = scene(10, 13, 12, seed=4)
    check_model(mlp, image, (9, 8))
    model = S3FN(SpectralMeanMLP(12, 3), torch.randn(3, 10), head_dim=20)
    assert supports_dense(model)
    check_model(model, image, (7, 7))


@pytest.mark.parametrize(
    ("pools", "window", "size", "max_pixels"),
    [
        pytest.param(PAPER_POOLS, (15, 15), (14, 13), 16, id="paper-4x4-tiles"),
        pytest.param(PAPER_POOLS, (15, 15), (21, 9), 9 * 4 * 4, id="paper-row-strips"),
        pytest.param(NO_POOLS, (7, 7), (23, 11), 11 * 11, id="nopool-row-strips"),
        pytest.param(NO_POOLS, (7, 7), (9, 10), 1, id="nopool-1-pixel-tiles"),
    ],
)
def test_tiles_match_one_pass(pools, window, size, max_pixels):
    torch.manual_seed(4)
    model = SpectralSpatialCNN(14, 3, window=window, pools=pools, spectral_branch=True, **SMALL)
    image = scene(*size, 14, seed=5)
    tiled = check_model(model, image, window, max_pixels=max_pixels)
    whole = dense_probabilities(model, padded_planes(image, window), window)
    torch.testing.assert_close(tiled, whole, rtol=0, atol=1e-6)


@pytest.mark.parametrize(
    ("height", "width", "step", "max_pixels", "strips"),
    [
        (21, 9, 4, 144, True),
        (300, 17, 4, 1 << 16, True),
        (40, 1000, 4, 4096, False),
        (5, 5, 1, 1, False),
    ],
)
def test_tiles_cover_the_scene_once_within_the_budget(height, width, step, max_pixels, strips):
    seen = np.zeros((height, width), dtype=int)
    tiles = list(_tiles(height, width, step, max_pixels))
    for r0, c0, rows, cols in tiles:
        assert rows * cols <= max(max_pixels, step * step)
        assert r0 % step == 0 and c0 % step == 0
        seen[r0 : r0 + rows, c0 : c0 + cols] += 1
    assert (seen == 1).all()
    assert all(c0 == 0 for _, c0, _, _ in tiles) == strips


def test_reference_ops_path_matches():
    torch.manual_seed(5)
    model = SpectralSpatialCNN(14, 4, window=16, use_fused_ops=False, **SMALL)
    assert not model.use_fused_ops
    check_model(model, scene(9, 11, 14, seed=6), (16, 16))


def test_eval_mode_inside_and_modes_restored():
    torch.manual_seed(6)
    backbone = SpectralSpatialCNN(14, 3, window=15, dropout=0.9, **SMALL)
    model = S3FN(backbone, torch.randn(3, 8)).freeze_backbone()
    model.train()
    image = scene(9, 9, 14, seed=7)
    planes = padded_planes(image, (15, 15))
    first = dense_probabilities(model, planes, 15)
    assert model.training and not model.backbone.training
    assert model.backbone.classifier[0].p == 0.9
    torch.testing.assert_close(first, dense_probabilities(model, planes, 15), rtol=0, atol=0)
    model.train()
    assert_agree(first, per_window(model, image, (15, 15)))


@pytest.mark.parametrize("device", DEVICES)
def test_output_on_model_device_sums_to_one(device):
    torch.manual_seed(7)
    model = SpectralSpatialCNN(14, 5, window=16, spectral_branch=True, **SMALL).to(device)
    image = scene(11, 12, 14, seed=8)
    dense = dense_probabilities(model, padded_planes(image, (16, 16)), (16, 16))
    assert dense.device.type == device
    torch.testing.assert_close(dense.sum(-1), torch.ones(11, 12, device=device))
    assert_agree(dense, per_window(model.cpu(), image, (16, 16)))


def test_padded_or_unknown_models_are_refused():
    torch.manual_seed(8)
    padded = SpectralSpatialCNN(6, 3, window=8, padding=1, **SMALL)
    planes = torch.randn(6, 17, 17) + 0.5
    assert not supports_dense(padded)
    with pytest.raises(ValueError, match=r"SpectralSpatialCNN with padding=1 is not supported"):
        dense_probabilities(padded, planes, 8)
    wrapped = S3FN(padded, torch.randn(3, 8))
    assert not supports_dense(wrapped)
    with pytest.raises(ValueError, match=r"an S3FN on a SpectralSpatialCNN with padding=1"):
        dense_probabilities(wrapped, planes, 8)
    assert not supports_dense(nn.Linear(6, 3))
    with pytest.raises(ValueError, match=r"Linear is not supported"):
        dense_probabilities(nn.Linear(6, 3), planes, 8)


def test_bad_planes_or_window_are_refused():
    torch.manual_seed(9)
    model = SpectralSpatialCNN(14, 3, window=15, **SMALL)
    planes = torch.randn(14, 20, 20) + 0.5
    with pytest.raises(
        ValueError, match=r"planes have 12 bands \(components\); this model takes 14"
    ):
        dense_probabilities(model, planes[:12], 15)
    with pytest.raises(ValueError, match=r"window 16x16; this model takes 15x15"):
        dense_probabilities(model, planes, 16)
    with pytest.raises(ValueError, match=r"14x20 pixels are smaller than one 15x15 window"):
        dense_probabilities(model, planes[:, :14], 15)
    with pytest.raises(ValueError, match=r"planes of shape \(20, 20\); expected C x"):
        dense_probabilities(model, planes[0], 15)
    with pytest.raises(ValueError, match=r"max_pixels=0; expected >= 1"):
        dense_probabilities(model, planes, 15, max_pixels=0)
