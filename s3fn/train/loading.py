"""Data loaders for training: whole batches read at once where the dataset allows it."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
from torch.utils.data import (
    BatchSampler,
    DataLoader,
    Dataset,
    RandomSampler,
    Sampler,
    SequentialSampler,
    TensorDataset,
    WeightedRandomSampler,
)

from s3fn.data.store import WindowStore
from s3fn.train import distributed
from s3fn.train.seeding import seed_worker


def make_loader(
    data: Dataset | DataLoader,
    batch_size: int,
    shuffle: bool,
    num_workers: int = 0,
    device: torch.device | None = None,
    ddp: distributed.Distributed | None = None,
    balance: float = 0.0,
) -> tuple[Iterable, torch.Generator | None]:
    """(loader, the generator its shuffling draws from, or None). A DataLoader is used as
    given; inside a process group each rank gets its shard and `batch_size` is the global
    batch of training data. Window stores and tensor datasets are read a whole batch at a
    time, in the order the per-window DataLoader would take them (same sampler, same draws).

    `balance` > 0 (shuffled, single-process training data) draws each epoch's windows with
    replacement, window i with weight n(class of i) ** -balance: 1 gives every class the same
    share, 0.5 a share that grows as the square root of its count."""
    if isinstance(data, DataLoader):
        return data, None
    generator = torch.Generator() if shuffle else None
    local = batch_size if ddp is None or not shuffle else ddp.local_batch(batch_size)
    settings = {
        "num_workers": num_workers,
        "worker_init_fn": seed_worker if num_workers else None,
        "pin_memory": device is not None and device.type == "cuda",
        "generator": generator,
    }
    if ddp is not None:
        sampler: Sampler[int] = ddp.sampler(len(data), shuffle, generator)
    elif shuffle and balance > 0:
        sampler = WeightedRandomSampler(
            class_weights(labels_of(data), balance), len(data), generator=generator
        )
    elif shuffle:
        sampler = RandomSampler(data, generator=generator)
    else:
        sampler = SequentialSampler(data)
    if isinstance(data, TensorDataset) or (
        isinstance(data, WindowStore) and data.transform is None
    ):
        batches = BatchSampler(sampler, local, drop_last=False)
        loader = DataLoader(BatchReader(data), batch_size=None, sampler=batches, **settings)
    else:
        loader = DataLoader(data, batch_size=local, sampler=sampler, **settings)
    return loader, generator


def labels_of(data: Dataset) -> torch.Tensor:
    """The class index of every sample of a window store or a (windows, labels) tensor dataset."""
    if isinstance(data, WindowStore):
        return torch.from_numpy(data.labels)
    if isinstance(data, TensorDataset):
        return data.tensors[1]
    raise TypeError(
        f"class balancing needs a WindowStore or a TensorDataset; got {type(data).__name__}"
    )


def class_weights(labels: torch.Tensor, balance: float) -> torch.Tensor:
    """Per-sample weights n(class) ** -balance (float64)."""
    labels = labels.long()
    counts = torch.bincount(labels).double()
    return counts[labels].pow(-balance)


def on_device(batch: Any, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """A loader's (windows, labels) batch as float32 windows and long labels on `device`."""
    x = torch.as_tensor(batch[0]).to(device, torch.float32, non_blocking=True)
    return x, torch.as_tensor(batch[1]).to(device, torch.long, non_blocking=True)


class BatchReader(Dataset):
    """A window store or tensor dataset indexed by a whole batch of indices at once: one
    gather instead of a sample tuple per window and a collate that stacks them again."""

    def __init__(self, data: WindowStore | TensorDataset) -> None:
        self.data = data

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, indices: list[int]) -> tuple[torch.Tensor, ...]:
        """(windows, labels) (or the tensor dataset's tensors) of `indices`, in their order."""
        if isinstance(self.data, WindowStore):
            return self.data.read(indices)
        index = torch.as_tensor(indices, dtype=torch.long)
        return tuple(t.index_select(0, index) for t in self.data.tensors)
