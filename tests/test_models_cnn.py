"""SpectralSpatialCNN: the paper's layer sizes, input checks, fused vs reference ops."""

from __future__ import annotations

import pytest
import torch

from s3fn.models import SpectralSpatialCNN, build_model, conv_output_shape, minimum_input_size


def small(**kwargs) -> SpectralSpatialCNN:
    torch.manual_seed(0)
    args = {"window": 14, "channels": (2, 3, 4), "feature_dim": 8, "hidden_dim": 6}
    return SpectralSpatialCNN(14, 3, **(args | kwargs))


def test_paper_layer_sizes_for_32x32_windows():
    model = SpectralSpatialCNN(30, 5, window=32)
    # 30x32x32 -> conv 28x30x30 -> pool 14x15x15 -> conv 12x13x13 -> conv 10x11x11 -> pool 5x5x5
    assert conv_output_shape((30, 32, 32), 3, 0) == (5, 5, 5)
    assert model.feature[1].in_features == 128 * 5 * 5 * 5
    assert [b.out_channels for b in model.blocks] == [32, 64, 128]
    assert [b.pool for b in model.blocks] == ["avg", None, "avg"]
    assert model.feature[1].out_features == 128
    assert model.classifier[0].p == 0.5
    assert model.classifier[1].out_features == 64
    assert model.classifier[3].out_features == 5


def test_outputs_and_features_shapes_accept_both_layouts():
    model = small().eval()
    x = torch.randn(5, 14, 14, 14)
    assert model(x).shape == (5, 3)
    assert model.features(x).shape == (5, 8)
    torch.testing.assert_close(model(x), model(x.unsqueeze(1)))
    assert (model.features(x) >= 0).all()  # after ReLU


def test_rectangular_windows_and_padding():
    model = SpectralSpatialCNN(6, 2, window=(8, 10), padding=1, channels=(2, 2, 2))
    assert model(torch.randn(2, 6, 8, 10)).shape == (2, 2)
    assert minimum_input_size(3, 1) == 4
    assert minimum_input_size(3, 0) == 14


def test_too_small_input_is_refused_with_the_limit():
    with pytest.raises(ValueError, match=r"6 bands and a 8x8 window is too small.*>= 14"):
        SpectralSpatialCNN(6, 3, window=8)


def test_wrong_band_count_or_window_at_forward():
    model = small()
    with pytest.raises(ValueError, match=r"input has 12 bands.*takes 14"):
        model(torch.randn(2, 12, 14, 14))
    with pytest.raises(ValueError, match="windows are 15x14; this model takes 14x14"):
        model(torch.randn(2, 14, 15, 14))
    with pytest.raises(ValueError, match="expected N x 1 x C x h x w"):
        model(torch.randn(14, 14, 14))


def test_fused_and_reference_ops_agree_in_forward_and_backward():
    fused = small(use_fused_ops=True).eval()
    reference = small(use_fused_ops=False).eval()
    reference.load_state_dict(fused.state_dict())
    x = torch.randn(4, 1, 14, 14, 14)
    y = torch.tensor([0, 1, 2, 1])
    losses = []
    for model in (fused, reference):
        loss = torch.nn.functional.cross_entropy(model(x), y)
        loss.backward()
        losses.append(loss)
    torch.testing.assert_close(losses[0], losses[1], rtol=1e-5, atol=1e-6)
    for (name, a), b in zip(fused.named_parameters(), reference.parameters(), strict=True):
        torch.testing.assert_close(a.grad, b.grad, rtol=1e-4, atol=1e-6, msg=name)


def test_use_fused_ops_switch_and_config_round_trip():
    model = small()
    model.use_fused_ops = False
    assert not any(block.use_fused_ops for block in model.blocks)
    rebuilt = build_model(model.config(), use_fused_ops=False)
    assert rebuilt.config() == model.config()
    rebuilt.load_state_dict(model.state_dict())
    x = torch.randn(2, 14, 14, 14)
    torch.testing.assert_close(rebuilt.eval()(x), model.eval()(x))
