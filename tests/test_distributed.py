"""Data-parallel `fit` on 2 CPU processes (gloo) gives what one process gives."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch.utils.data import TensorDataset

from s3fn.cli import main
from s3fn.inference import Classifier
from s3fn.models import S3FN, SpectralMeanMLP, SpectralSpatialCNN
from s3fn.train import Augment, FitOptions, fit, seed_everything
from s3fn.train.distributed import Distributed, ShardSampler, current
from tests.cli_helpers import TINY, object_folder

OPTIONS = FitOptions(epochs=3, batch_size=8, patience=None, augment=Augment(flip=True))


def windows(n: int, seed: int) -> TensorDataset:
    """Two classes told apart by the level of their spectra."""
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % 2
    return TensorDataset(torch.randn(n, 5, 4, 4, generator=g) * 0.3 + y[:, None, None, None], y)


def model(kind: str) -> torch.nn.Module:
    seed_everything(0)
    if kind.startswith("cnn"):
        dropout = 0.5 if kind == "cnn-dropout" else 0.0
        return SpectralSpatialCNN(5, 2, window=4, channels=(2, 2, 4), padding=1, dropout=dropout)
    backbone = SpectralMeanMLP(5, 2, feature_dim=8, hidden_dim=4, dropout=0.0)
    return S3FN(backbone, torch.randn(2, 6))


def train(kind: str) -> tuple[dict[str, torch.Tensor], list[dict]]:
    net = model(kind)
    stage = "cnn" if kind.startswith("cnn") else "joint"
    result = fit(net, windows(32, 0), windows(12, 1), stage=stage, options=OPTIONS, device="cpu")
    return net.state_dict(), result.history


def _worker(rank: int, port: int, kinds: list[str], path: str) -> None:
    os.environ["LOCAL_RANK"] = str(rank)
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2)
    try:
        out = {kind: train(kind) for kind in kinds}
        if rank == 0:
            torch.save(out, path)
        # Both ranks past their last collective before the group goes: a rank tearing gloo
        # down while the other still talks to it aborted now and then.
        dist.barrier()
    finally:
        dist.destroy_process_group()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.skipif(not dist.is_available(), reason="torch.distributed not built")
def test_two_gloo_processes_match_one_process(tmp_path):
    """With dropout too: each rank drops its rows of the single process's mask."""
    kinds = ["cnn", "cnn-dropout", "s3fn"]
    path = str(tmp_path / "ddp.pt")
    mp.start_processes(
        _worker, args=(free_port(), kinds, path), nprocs=2, join=True, start_method="spawn"
    )
    parallel = torch.load(path, weights_only=True)
    for kind in kinds:
        weights, history = train(kind)
        ddp_weights, ddp_history = parallel[kind]
        assert weights.keys() == ddp_weights.keys()
        for name in weights:
            torch.testing.assert_close(ddp_weights[name], weights[name], rtol=1e-4, atol=1e-5)
        for one, two in zip(history, ddp_history, strict=True):
            for key in ("train_loss", "val_loss", "val_accuracy"):
                assert two[key] == pytest.approx(one[key], rel=1e-4, abs=1e-6)


def test_shard_sampler_splits_the_single_process_order():
    g = torch.Generator().manual_seed(3)
    order = torch.randperm(10, generator=g).tolist()
    shards = []
    for rank in range(3):
        sampler = ShardSampler(10, rank, 3, torch.Generator().manual_seed(3), pad=True)
        shards.append(list(sampler))
        assert len(sampler) == len(shards[-1]) == 4
    assert [shards[r][i] for i in range(3) for r in range(3)] == order[:9]
    unpadded = [list(ShardSampler(10, r, 3, None, pad=False)) for r in range(3)]
    assert sorted(i for shard in unpadded for i in shard) == list(range(10))


def test_global_batch_must_divide_and_single_process_has_no_group():
    assert current() is None
    with pytest.raises(ValueError, match="not divisible by the 3 processes"):
        Distributed(0, 3, 0).local_batch(64)
    assert Distributed(1, 2, 1).local_batch(64) == 32


def test_torchrun_two_processes_write_one_run_folder(tmp_path):
    data = object_folder(tmp_path / "data")
    run = tmp_path / "run"
    torchrun = Path(sys.executable).with_name("torchrun")
    launch = [str(torchrun), "--nproc-per-node", "2", "--master-port", str(free_port())]
    train = ["train", "--data", str(data), "--stage", "cnn", "--out", str(run), *TINY]
    command = [*launch, "-m", "s3fn", *train]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.count("run folder") == 1  # rank 0 alone reports
    assert (run / "bundle" / "classifier.json").is_file() and (run / "report.md").is_file()
    log = (run / "train.log").read_text()
    assert log.count("[cnn] epoch 2/2") == 1


@pytest.mark.filterwarnings("ignore::rasterio.errors.NotGeoreferencedWarning")
def test_torchrun_shares_maps_by_tile_or_by_file_and_writes_each_once(tmp_path):
    data = object_folder(tmp_path / "data")
    run = tmp_path / "run"
    assert main(["train", "--data", str(data), "--stage", "cnn", "--out", str(run), *TINY]) == 0
    cubes = sorted((data / "bright").glob("*.npy"))[:2]
    classifier = Classifier.load(run / "bundle")
    torchrun = Path(sys.executable).with_name("torchrun")
    for shared in (cubes[:1], cubes):  # one cube: its tiles are dealt; two: the cubes are
        out = tmp_path / f"maps{len(shared)}"
        launch = [str(torchrun), "--nproc-per-node", "2", "--master-port", str(free_port())]
        predict = [
            "predict",
            str(run),
            *map(str, shared),
            "--map",
            "--tile",
            "6",
            "--out",
            str(out),
        ]
        result = subprocess.run(
            [*launch, "-m", "s3fn", *predict], capture_output=True, text=True, timeout=300
        )
        assert result.returncode == 0, result.stderr[-2000:]
        assert result.stdout.count("wrote:") == 1  # rank 0 alone reports
        assert not list(out.glob(".*partial*"))  # scratch arrays removed
        assert sorted(p.name for p in out.glob("*_labels.tif")) == [
            f"{cube.stem}_labels.tif" for cube in shared
        ]
        for cube in shared:
            with rasterio.open(out / f"{cube.stem}_labels.tif") as stored:
                labels = stored.read(1).astype(int) - 1
            np.testing.assert_array_equal(labels, classifier.predict_map(np.load(cube), tile=6))
