"""SpectralMeanMLP: a function of each window's mean spectrum only."""

from __future__ import annotations

import torch

from s3fn.models import SpectralMeanMLP, build_model


def test_output_depends_only_on_the_mean_spectrum():
    torch.manual_seed(0)
    model = SpectralMeanMLP(4, 3).eval()
    x = torch.randn(2, 4, 5, 5)
    shuffled = x.flatten(2)[:, :, torch.randperm(25)].reshape(2, 4, 5, 5)
    torch.testing.assert_close(model(x), model(shuffled))
    flat = x.mean(dim=(2, 3), keepdim=True).expand(-1, -1, 3, 7)
    torch.testing.assert_close(model(x), model(flat))
    assert model.features(x).shape == (2, 128)
    assert model(x.unsqueeze(1)).shape == (2, 3)


def test_config_round_trip():
    model = SpectralMeanMLP(4, 3, feature_dim=16, hidden_dim=8, dropout=0.2)
    rebuilt = build_model(model.config())
    assert rebuilt.config() == model.config()
