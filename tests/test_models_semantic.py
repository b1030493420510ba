"""S3FN head: cosine logits against frozen class embeddings, temperature, freezing."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from s3fn.models import S3FN, SpectralMeanMLP, build_model


def model(**kwargs) -> S3FN:
    torch.manual_seed(0)
    backbone = SpectralMeanMLP(5, 3, feature_dim=8, hidden_dim=4)
    return S3FN(backbone, torch.randn(3, 7), **kwargs)


def test_logits_are_scaled_cosines_to_the_class_embeddings():
    m = model(init_scale=2.5).eval()
    x = torch.randn(4, 5, 3, 3)
    z = m.head(m.backbone.features(x))
    expected = 2.5 * F.normalize(z, dim=1) @ F.normalize(m.class_embeddings, dim=1).T
    torch.testing.assert_close(m(x), expected, rtol=1e-5, atol=1e-6)
    assert m.head[0].out_features == 7  # Dense(d_text)
    assert isinstance(m.head[1], torch.nn.ReLU)


def test_loss_is_cross_entropy_of_the_logits():
    m = model().eval()
    x, y = torch.randn(6, 5, 3, 3), torch.tensor([0, 1, 2, 2, 1, 0])
    torch.testing.assert_close(m.loss(x, y), F.cross_entropy(m(x), y), rtol=1e-5, atol=1e-6)


def test_fixed_scale_is_not_trained_and_learnable_scale_is_clamped():
    fixed = model()
    assert not any("scale" in name for name, _ in fixed.named_parameters())
    assert float(fixed.scale) == 1.0
    learnable = model(temperature="learnable", init_scale=10.0, max_scale=20.0)
    assert math.isclose(learnable.log_scale.item(), math.log(10.0), rel_tol=1e-6)
    with torch.no_grad():
        learnable.log_scale.fill_(math.log(50.0))
    assert learnable.scale.item() == 20.0
    learnable.loss(torch.randn(2, 5, 3, 3), torch.tensor([0, 1])).backward()
    assert learnable.log_scale.grad is not None


def test_head_dim_adds_a_hidden_layer():
    m = model(head_dim=11)
    assert [layer.out_features for layer in m.head if hasattr(layer, "out_features")] == [11, 7]


def test_frozen_backbone_stays_in_eval_mode_without_gradients():
    m = model().freeze_backbone()
    m.train()
    assert m.training and m.head.training and not m.backbone.training
    assert not any(p.requires_grad for p in m.backbone.parameters())
    m.freeze_backbone(False)
    assert m.backbone.training and all(p.requires_grad for p in m.backbone.parameters())


def test_embeddings_are_a_buffer_outside_the_state_dict():
    m = model()
    assert "class_embeddings" not in m.state_dict()
    assert not m.class_embeddings.requires_grad


def test_config_round_trip():
    m = model(temperature="learnable", head_dim=5)
    rebuilt = build_model(m.config(), class_embeddings=m.class_embeddings)
    rebuilt.load_state_dict(m.state_dict())
    x = torch.randn(3, 5, 2, 2)
    torch.testing.assert_close(rebuilt.eval()(x), m.eval()(x))


@pytest.mark.parametrize(
    ("embeddings", "kwargs", "message"),
    [
        (torch.randn(4, 7), {}, "backbone has 3 classes but class_embeddings has 4 rows"),
        (torch.zeros(3, 7), {}, "all-zero row"),
        (torch.randn(3, 7), {"temperature": "hot"}, "expected 'fixed' or 'learnable'"),
        (torch.randn(3, 7), {"init_scale": 0.0}, "expected 0 < init <= max"),
    ],
)
def test_bad_arguments_are_refused(embeddings, kwargs, message):
    with pytest.raises(ValueError, match=message):
        S3FN(SpectralMeanMLP(5, 3), embeddings, **kwargs)


def test_build_model_refuses_mismatched_embeddings():
    m = model()
    with pytest.raises(ValueError, match=r"expected \(3, 7\)"):
        build_model(m.config(), class_embeddings=torch.randn(3, 8))
    with pytest.raises(ValueError, match="needs class_embeddings"):
        build_model(m.config())
    with pytest.raises(ValueError, match="type 'Nope'"):
        build_model({"type": "Nope"})
