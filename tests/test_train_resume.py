"""Checkpoints and resume: an interrupted run continued with resume=True ends where an
uninterrupted run ends, bit for bit, on the CPU."""

from __future__ import annotations

import pytest
import torch
from torch.utils.data import TensorDataset

from s3fn.models import S3FN, SpectralSpatialCNN
from s3fn.train import EarlyStopping, fit, load_checkpoint, save_checkpoint, seed_everything


class Interrupt(Exception):
    pass


def data(n: int, seed: int) -> TensorDataset:
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % 2
    return TensorDataset(torch.randn(n, 14, 14, 14, generator=g) + y[:, None, None, None], y)


def model() -> S3FN:
    seed_everything(0)
    backbone = SpectralSpatialCNN(14, 2, window=14, channels=(2, 2, 2), feature_dim=8)
    return S3FN(backbone, torch.randn(2, 4), temperature="learnable")


def run(stage: str, folder, *, stop_after: int | None = None, resume: bool = False, net=None):
    net = net or model()

    def interrupt(record):
        if record["epoch"] == stop_after:
            raise Interrupt

    result = fit(
        net,
        data(24, 0),
        data(8, 1),
        stage=stage,
        epochs=4,
        batch_size=8,
        patience=10,
        checkpoint_dir=folder,
        resume=resume,
        callbacks=[interrupt],
        seed=7,
    )
    return net, result


def equal_states(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


@pytest.mark.parametrize("stage", ["cnn", "joint"])
def test_resume_after_an_interruption_gives_the_same_final_weights(tmp_path, stage):
    whole, whole_result = run(stage, tmp_path / "whole")
    with pytest.raises(Interrupt):
        run(stage, tmp_path / "cut", stop_after=2)
    assert load_checkpoint(tmp_path / "cut" / f"{stage}.pt")["epoch"] == 2
    resumed, resumed_result = run(stage, tmp_path / "cut", resume=True)
    assert equal_states(whole, resumed)
    strip = [{k: v for k, v in r.items() if "seconds" not in k} for r in whole_result.history]
    again = [{k: v for k, v in r.items() if "seconds" not in k} for r in resumed_result.history]
    assert strip == again
    assert resumed_result.best_epoch == whole_result.best_epoch


def test_a_finished_stage_is_restored_not_retrained(tmp_path):
    first, result = run("cnn", tmp_path)
    again, epochs = model(), []
    second = fit(
        again,
        data(24, 0),
        data(8, 1),
        stage="cnn",
        epochs=4,
        batch_size=8,
        patience=10,
        checkpoint_dir=tmp_path,
        resume=True,
        callbacks=[epochs.append],
        seed=7,
    )
    assert not epochs
    assert equal_states(first, again)
    assert second.history == result.history


def test_resume_with_other_settings_is_refused(tmp_path):
    run("cnn", tmp_path)
    with pytest.raises(ValueError, match=r"written with lr=0\.001, this run has lr=0\.01"):
        fit(
            model(),
            data(24, 0),
            stage="cnn",
            lr=0.01,
            batch_size=8,
            seed=7,
            checkpoint_dir=tmp_path,
            resume=True,
        )


def test_resume_with_another_architecture_is_refused(tmp_path):
    run("cnn", tmp_path)
    seed_everything(0)
    backbone = SpectralSpatialCNN(14, 2, window=14, channels=(2, 2, 3), feature_dim=8)
    with pytest.raises(ValueError, match="written with model="):
        fit(backbone, data(24, 0), batch_size=8, seed=7, checkpoint_dir=tmp_path, resume=True)


def test_checkpoints_are_written_atomically(tmp_path):
    save_checkpoint(tmp_path / "a.pt", {"x": torch.ones(2), "epoch": 3})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.pt"]
    assert load_checkpoint(tmp_path / "a.pt")["epoch"] == 3
    (tmp_path / "bad.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="not a readable s3fn checkpoint"):
        load_checkpoint(tmp_path / "bad.pt")


def test_early_stopping_state_round_trips():
    stopper = EarlyStopping(patience=2)
    net = torch.nn.Linear(2, 1)
    stopper.step(1.0, 1, net)
    stopper.step(2.0, 2, net)
    other = EarlyStopping(patience=2)
    other.load_state_dict(stopper.state_dict())
    assert (other.best_score, other.best_epoch, other.bad_epochs) == (1.0, 1, 1)
    other.step(3.0, 3, net)
    assert other.should_stop
