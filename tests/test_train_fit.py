"""fit: the three stages, early stopping with best-weights restore, reproducibility, options."""

from __future__ import annotations

import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from s3fn.models import S3FN, SpectralMeanMLP, SpectralSpatialCNN
from s3fn.train import Augment, FitOptions, fit, seed_everything


def windows(n: int, seed: int, bands: int = 5, size: int = 3) -> TensorDataset:
    """Three classes told apart by the level of their spectra."""
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % 3
    x = torch.randn(n, bands, size, size, generator=g) * 0.3 + y[:, None, None, None] - 1.0
    return TensorDataset(x, y)


def mlp_s3fn(seed: int = 0) -> S3FN:
    seed_everything(seed)
    return S3FN(SpectralMeanMLP(5, 3, feature_dim=16, hidden_dim=8), torch.randn(3, 6))


def snapshot(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in module.state_dict().items()}


def changed(before: dict[str, torch.Tensor], module: torch.nn.Module, prefix: str) -> bool:
    after = module.state_dict()
    keys = [k for k in before if k.startswith(prefix)]
    assert keys
    return any(not torch.equal(before[k], after[k]) for k in keys)


def test_stage_cnn_trains_the_backbone_only():
    model = mlp_s3fn()
    before = snapshot(model)
    result = fit(model, windows(60, 0), windows(30, 1), stage="cnn", epochs=2, batch_size=16)
    assert changed(before, model, "backbone.")
    assert not changed(before, model, "head.")
    assert [r["epoch"] for r in result.history] == [1, 2]
    assert {"train_loss", "val_loss", "val_accuracy", "lr", "seconds"} <= set(result.history[0])
    assert not model.training


def test_stage_semantic_freezes_the_backbone_including_dropout():
    model = mlp_s3fn()
    before = snapshot(model)
    seen = []
    model.backbone.feature.register_forward_hook(lambda m, i, o: seen.append(m.training))
    fit(model, windows(60, 0), windows(30, 1), stage="semantic", epochs=2, batch_size=16)
    assert not changed(before, model, "backbone.")
    assert changed(before, model, "head.")
    assert seen and not any(seen)


def test_stage_joint_trains_everything_with_a_learnable_temperature():
    seed_everything(0)
    model = S3FN(SpectralMeanMLP(5, 3), torch.randn(3, 6), temperature="learnable")
    before = snapshot(model)
    fit(model, windows(60, 0), None, stage="joint", epochs=2, batch_size=16)
    assert changed(before, model, "backbone.")
    assert changed(before, model, "head.")
    assert changed(before, model, "log_scale")


def test_stage_semantic_needs_an_s3fn_model():
    with pytest.raises(TypeError, match="stage 'semantic' trains an S3FN model"):
        fit(SpectralMeanMLP(5, 3), windows(6, 0), stage="semantic", epochs=1)
    with pytest.raises(ValueError, match="stage='x'"):
        fit(SpectralMeanMLP(5, 3), windows(6, 0), stage="x", epochs=1)


def test_learning_the_task_end_to_end_with_the_3d_cnn():
    seed_everything(0)
    model = SpectralSpatialCNN(14, 3, window=14, channels=(2, 4, 4), feature_dim=16)
    train, val = windows(90, 0, bands=14, size=14), windows(30, 1, bands=14, size=14)
    result = fit(model, train, val, epochs=6, batch_size=16, lr=3e-3, augment=None)
    assert result.history[-1]["val_accuracy"] > 0.9
    assert result.history[-1]["train_loss"] < result.history[0]["train_loss"]


def test_runs_are_bit_reproducible_on_cpu():
    states = []
    for _ in range(2):
        model = mlp_s3fn(seed=3)
        fit(model, windows(40, 0), windows(20, 1), stage="joint", epochs=2, batch_size=8, seed=5)
        states.append(model.state_dict())
    assert all(torch.equal(states[0][k], states[1][k]) for k in states[0])


def test_dataloader_workers_do_not_change_the_result():
    states = []
    for workers in (0, 1):
        model = mlp_s3fn(seed=1)
        fit(model, windows(40, 0), windows(20, 1), stage="joint", epochs=1, num_workers=workers)
        states.append(model.state_dict())
    assert all(torch.equal(states[0][k], states[1][k]) for k in states[0])


def test_early_stopping_restores_the_best_weights():
    model = mlp_s3fn()
    best = {}

    def keep_best(record):
        if record["improved"]:
            best.update(snapshot(model))

    # A large learning rate makes validation worse after the first epochs.
    result = fit(
        model.backbone,
        windows(60, 0),
        windows(30, 1),
        epochs=30,
        lr=1.0,
        patience=2,
        batch_size=8,
        callbacks=[keep_best],
    )
    assert result.stopped_early
    assert result.epochs_run == result.best_epoch + 2
    losses = [r["val_loss"] for r in result.history]
    assert result.best_score == min(losses)
    restored = model.state_dict()
    assert all(torch.equal(restored[k], best[k]) for k in best)


def test_without_validation_every_epoch_runs_and_the_last_weights_stay():
    model = SpectralMeanMLP(5, 3)
    result = fit(model, windows(30, 0), epochs=3, patience=1)
    assert result.epochs_run == 3 and not result.stopped_early
    assert "val_loss" not in result.history[0]


def test_a_given_dataloader_and_adamw_and_a_scheduler():
    model = SpectralMeanMLP(5, 3)
    loader = DataLoader(windows(30, 0), batch_size=10)
    result = fit(
        model,
        loader,
        epochs=2,
        optimizer="adamw",
        lr=0.1,
        scheduler=lambda opt: torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.5),
    )
    assert [r["lr"] for r in result.history] == [0.1, 0.05]


def test_items_with_image_ids_are_accepted():
    base = windows(12, 0)
    data = [(x, int(y), f"image{i % 4}") for i, (x, y) in enumerate(base)]
    assert fit(SpectralMeanMLP(5, 3), data, data, epochs=1).epochs_run == 1


def test_options_are_checked_by_name():
    with pytest.raises(ValueError, match="optimizer='sgd'"):
        FitOptions(optimizer="sgd")
    with pytest.raises(ValueError, match="monitor='acc'"):
        FitOptions(monitor="acc")
    with pytest.raises(TypeError):
        fit(SpectralMeanMLP(5, 3), windows(6, 0), epoch=1)


def test_augment_scale_flip_rot90():
    x = torch.arange(2 * 3 * 4 * 4, dtype=torch.float32).reshape(2, 3, 4, 4) + 1
    g = torch.Generator().manual_seed(0)
    scaled = Augment(scale=(0.9, 1.1))(x, g)
    ratio = scaled / x
    assert torch.allclose(ratio, ratio[:, :1, :1, :1].expand_as(ratio))  # one factor per window
    assert ((ratio >= 0.9) & (ratio <= 1.1)).all()
    moved = Augment(scale=None, flip=True, rot90=True)(x, torch.Generator().manual_seed(1))
    for a, b in zip(moved, x, strict=True):  # same values per band, only rearranged
        torch.testing.assert_close(a.flatten(1).sort().values, b.flatten(1).sort().values)
    again = Augment(scale=None, flip=True, rot90=True)(x, torch.Generator().manual_seed(1))
    assert torch.equal(moved, again)
    with pytest.raises(ValueError, match="square"):
        Augment(rot90=True)(torch.ones(1, 2, 3, 4))
    with pytest.raises(ValueError, match="0 < lo <= hi"):
        Augment(scale=(1.1, 0.9))


def chained_transforms(augment: Augment, x: torch.Tensor, generator: torch.Generator):
    """The augmentation as first written: each flip and rotation a whole-batch `where`."""
    shape = (x.shape[0],) + (1,) * (x.ndim - 1)

    def coin() -> torch.Tensor:
        return torch.rand(shape, generator=generator) < 0.5

    if augment.scale is not None:
        lo, hi = augment.scale
        x = x * (lo + (hi - lo) * torch.rand(shape, generator=generator))
    if augment.flip:
        x = torch.where(coin(), x.flip(-1), x)
        x = torch.where(coin(), x.flip(-2), x)
    if augment.rot90:
        x = torch.where(coin(), x.rot90(1, (-2, -1)), x)
        x = torch.where(coin(), x.rot90(2, (-2, -1)), x)
    if augment.noise > 0:
        x = x + augment.noise * torch.randn(x.shape, generator=generator)
    return x


@pytest.mark.parametrize(
    ("shape", "augment"),
    [
        ((40, 1, 5, 9, 9), Augment(scale=(0.9, 1.1), flip=True, rot90=True, noise=0.05)),
        ((33, 7, 6, 6), Augment(scale=None, rot90=True)),
        ((20, 5, 6, 8), Augment(scale=(0.5, 2.0), flip=True)),
    ],
)
def test_augment_moves_pixels_exactly_as_the_chained_transforms(shape, augment):
    x = torch.randn(shape, generator=torch.Generator().manual_seed(5))
    moved = augment(x, torch.Generator().manual_seed(9))
    assert torch.equal(moved, chained_transforms(augment, x, torch.Generator().manual_seed(9)))


def test_deterministic_training_does_not_fill_new_tensors():
    """torch's deterministic mode writes NaN into every `empty` tensor; training turns that
    debugging pass off inside its block and restores the setting after."""
    from s3fn.train.seeding import deterministic_algorithms

    before = torch.utils.deterministic.fill_uninitialized_memory
    with deterministic_algorithms(True):
        assert torch.are_deterministic_algorithms_enabled()
        assert not torch.utils.deterministic.fill_uninitialized_memory
    assert torch.utils.deterministic.fill_uninitialized_memory == before


def test_text_soft_targets_follow_the_descriptions_similarity():
    from s3fn.train.stages import text_soft_targets

    embeddings = torch.tensor([[1.0, 0.0, 0.0], [0.9, 0.1, 0.0], [0.0, 0.0, 1.0]])
    targets = text_soft_targets(embeddings, 0.2)
    torch.testing.assert_close(targets.sum(dim=1), torch.ones(3))
    torch.testing.assert_close(targets.diagonal(), torch.full((3,), 0.8))
    assert targets[0, 1] > 10 * targets[0, 2]  # class 0's text is close to class 1's, not 2's
    torch.testing.assert_close(targets[2, :2], torch.full((2,), 0.1))  # 2 is as far from both


def test_text_targets_shape_the_cnn_stage_loss_and_need_class_embeddings():
    from s3fn.train.stages import plan_stage, text_soft_targets

    model = mlp_s3fn()
    x, y = windows(12, 0).tensors
    plan = plan_stage(model, "cnn", text_targets=0.3)
    model.eval()  # no dropout: the two losses see the same logits
    soft = plan.loss(x, y)
    expected = torch.nn.functional.cross_entropy(
        model.backbone(x), text_soft_targets(model.class_embeddings, 0.3)[y]
    )
    torch.testing.assert_close(soft, expected)
    plain = plan_stage(model, "cnn")
    model.eval()
    assert not torch.allclose(soft, plain.loss(x, y))
    with pytest.raises(TypeError, match=r"text_targets=0\.3 needs an S3FN model"):
        plan_stage(SpectralMeanMLP(5, 3), "cnn", text_targets=0.3)


def test_learnable_prototypes_start_at_the_text_and_move_in_the_semantic_stage():
    seed_everything(0)
    text = torch.randn(3, 6)
    model = S3FN(SpectralMeanMLP(5, 3, feature_dim=16, hidden_dim=8), text, prototypes="learnable")
    torch.testing.assert_close(model.targets, text)
    fit(model, windows(60, 0), windows(30, 1), stage="semantic", epochs=2, batch_size=16)
    assert not torch.allclose(model.class_prototypes, text)
    torch.testing.assert_close(model.class_embeddings, text)  # the text itself is kept
    assert "class_prototypes" in model.state_dict() and model.config()["prototypes"] == "learnable"
    with pytest.raises(ValueError, match=r"prototypes='moving'"):
        S3FN(SpectralMeanMLP(5, 3), text, prototypes="moving")


def cnn_s3fn(seed: int = 0) -> S3FN:
    seed_everything(seed)
    cnn = SpectralSpatialCNN(7, 3, window=7, channels=(4, 8, 8), pools=(None, None, None))
    return S3FN(cnn, torch.randn(3, 6), temperature="learnable", init_scale=5.0)


def cnn_windows(n: int, seed: int) -> TensorDataset:
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % 3
    x = torch.randn(n, 7, 7, 7, generator=g) * 0.5 + y[:, None, None, None] - 1.0
    return TensorDataset(x, y)


def semantic_after_cnn(
    augment: Augment | None,
    cached: bool,
    *,
    draws: int = 2,
    epochs: int = 5,
    learnable_prototypes: bool = False,
):
    """An S3FN trained one CNN epoch, then its semantic stage; (model, result, windows that
    went through the backbone during the semantic stage)."""
    train, val = cnn_windows(70, 0), cnn_windows(30, 1)
    model = cnn_s3fn()
    if learnable_prototypes:
        model = S3FN(model.backbone, model.class_embeddings, prototypes="learnable")
    fit(model, train, val, stage="cnn", epochs=1, batch_size=16, augment=None)
    calls: list[int] = []
    hook = model.backbone.blocks.register_forward_hook(
        lambda m, i, o, seen=calls: seen.append(len(i[0]))
    )
    result = fit(
        model,
        train,
        val,
        stage="semantic",
        epochs=epochs,
        batch_size=16,
        augment=augment,
        frozen_draws=draws,
        cache_frozen=cached,
    )
    hook.remove()
    return model, result, sum(calls)


AUGMENTED = Augment(scale=(0.8, 1.2), flip=True, noise=0.1)


# Units in the last place by which the cached and per-epoch semantic stages may differ. They
# compute each window's feature in different batches (the cache reads the windows in order, the
# per-epoch path in shuffled batches), and the CPU's GEMM kernels (oneDNN / MKL) are chosen by
# batch size and CPU, so a feature can differ in its last bits between the two. Over 4 epochs of
# Adam that stays at the weights' own rounding (measured: under 1 ulp on Intel and AMD EPYC); a
# real difference between the paths, such as one epoch more or less, moves them by about 1e-3.
FLOAT32_ULPS = 16


def assert_within_float32_rounding(actual: dict, expected: dict, ulps: int = FLOAT32_ULPS) -> None:
    """Every tensor of `actual` equals `expected`'s within `ulps` float32 units of its scale."""
    eps = torch.finfo(torch.float32).eps
    for key, value in expected.items():
        scale = max(1.0, float(value.abs().max()))
        torch.testing.assert_close(actual[key], value, rtol=0.0, atol=ulps * eps * scale, msg=key)


@pytest.mark.parametrize("learnable_prototypes", [False, True])
def test_frozen_backbone_computed_once_matches_the_per_epoch_path(learnable_prototypes):
    runs = {
        cached: semantic_after_cnn(
            None, cached, epochs=4, learnable_prototypes=learnable_prototypes
        )
        for cached in (True, False)
    }
    model, result, windows_through_backbone = runs[True]
    assert_within_float32_rounding(snapshot(model), snapshot(runs[False][0]))
    eps = torch.finfo(torch.float32).eps
    assert [r["val_loss"] for r in result.history] == pytest.approx(
        [r["val_loss"] for r in runs[False][1].history], rel=FLOAT32_ULPS * eps
    )
    assert windows_through_backbone == 100  # every window once, not once per epoch
    assert runs[False][2] >= 4 * 100
    # Same kernels, same batches: the cached path itself is bit-reproducible.
    again = semantic_after_cnn(None, True, epochs=4, learnable_prototypes=learnable_prototypes)
    for key, value in snapshot(model).items():
        assert torch.equal(snapshot(again[0])[key], value), key


def test_the_rounding_tolerance_tells_a_different_training_apart():
    """One epoch fewer on the per-epoch path is a real difference, far outside the tolerance."""
    cached = snapshot(semantic_after_cnn(None, True, epochs=4)[0])
    shorter = snapshot(semantic_after_cnn(None, False, epochs=3)[0])
    with pytest.raises(AssertionError):
        assert_within_float32_rounding(cached, shorter)


def test_only_a_frozen_s3fn_backbone_is_cached():
    from s3fn.train.frozen import can_cache

    model = cnn_s3fn()
    assert can_cache(model, "semantic")
    assert not can_cache(model, "cnn") and not can_cache(model, "joint")
    assert not can_cache(model.backbone, "semantic")


def test_augmented_frozen_stage_computes_each_draw_once_and_is_reproducible():
    model, _, through_backbone = semantic_after_cnn(AUGMENTED, True, draws=3)
    assert through_backbone == 3 * 70 + 30  # three augmented copies of train, val once
    again, _, _ = semantic_after_cnn(AUGMENTED, True, draws=3)
    for key, value in snapshot(model).items():
        assert torch.equal(snapshot(again)[key], value), key
    _, _, through_two_epochs = semantic_after_cnn(AUGMENTED, True, draws=3, epochs=2)
    assert through_two_epochs == 2 * 70 + 30  # no draw that no epoch would train on
    other, _, _ = semantic_after_cnn(AUGMENTED, True, draws=1)
    assert not torch.equal(snapshot(other)["head.0.weight"], snapshot(model)["head.0.weight"])


def test_augmented_frozen_stage_matches_the_per_epoch_path_within_noise():
    """The draws cached differ from per-epoch draws, so the weights differ; the best
    validation loss the stage ends on does not, beyond noise (0.537 against 0.554 here)."""
    _, cached, through_cached = semantic_after_cnn(AUGMENTED, True, epochs=8)
    _, per_epoch, through_each = semantic_after_cnn(AUGMENTED, False, epochs=8)
    assert through_each >= 8 * 70 > through_cached
    assert cached.best_score == pytest.approx(per_epoch.best_score, rel=0.15)


@pytest.mark.parametrize("kind", ["tensors", "store"])
def test_batches_are_read_whole_in_the_per_window_order(kind, tmp_path):
    """fit reads a window store or tensor dataset a batch at a time; the batches (and so the
    training) are those of the per-window DataLoader with the same generator seed."""
    import numpy as np

    from s3fn.data.store import WindowStore, WindowStoreWriter
    from s3fn.train.loading import make_loader

    x, y = windows(45, 3).tensors
    data = TensorDataset(x, y)
    if kind == "store":
        path = tmp_path / "train.h5"
        writer = WindowStoreWriter(
            path,
            window_shape=tuple(x.shape[1:]),
            class_names=["a", "b", "c"],
            kind="object",
            split="train",
        )
        with writer:
            writer.append(x.numpy(), y.numpy(), "image", np.zeros((len(y), 2), dtype=np.int64))
        data = WindowStore(path, in_memory=True)
    for shuffle in (True, False):
        loader, generator = make_loader(data, 16, shuffle)
        plain = DataLoader(data, batch_size=16, shuffle=shuffle, generator=generator)
        for seed in (0, 1):
            if generator is not None:
                generator.manual_seed(seed)
            ours = [(bx.clone(), by.clone()) for bx, by in loader]
            if generator is not None:
                generator.manual_seed(seed)
            theirs = list(plain)
            assert len(ours) == len(theirs) == 3
            for (a, b), (c, d) in zip(ours, theirs, strict=True):
                assert torch.equal(a, c) and torch.equal(b.long(), d.long())
