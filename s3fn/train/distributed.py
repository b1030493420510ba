"""Data-parallel training with torch.distributed: what `fit` needs to run on N processes.

`s3fn.process_group.init_from_env()` joins the process group that `torchrun` describes. While
a group is initialised, `fit` asks `current()` for a `Distributed` and then shards the training
windows with `ShardSampler`, wraps the loss in `DistributedDataParallel`, reduces the loss and
accuracy sums across ranks, and lets rank 0 alone write checkpoints.

Equivalence with one process: the global batch is `batch_size` (each rank takes
`batch_size / world_size`), every rank draws the same permutation as a single process would,
and rank r takes positions r, r + N, ... of each global batch, augmented with the draws the
single process makes for those positions. Averaging gradients over ranks then gives the
single-process step (up to float summation order) whenever the number of training windows is
a multiple of `batch_size`; otherwise the last, padded batch of an epoch differs slightly.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import Sampler

from s3fn import process_group
from s3fn.process_group import ProcessGroup
from s3fn.train.stages import StagePlan


@dataclass(frozen=True)
class Distributed(ProcessGroup):
    """A rank of the group as training uses it: batch shards, samplers, DDP, reductions."""

    def local_batch(self, batch_size: int) -> int:
        """Per-rank batch size of a global `batch_size`; it must divide evenly."""
        if batch_size % self.world_size:
            raise ValueError(
                f"batch_size={batch_size} is not divisible by the {self.world_size} processes; "
                f"expected a multiple of {self.world_size} (it is the global batch)"
            )
        return batch_size // self.world_size

    def sampler(self, n: int, shuffle: bool, generator: torch.Generator | None) -> ShardSampler:
        """Training data (`shuffle`): padded to equal shards; evaluation data: disjoint shards."""
        return ShardSampler(n, self.rank, self.world_size, generator if shuffle else None, shuffle)

    def wrap(self, plan: StagePlan) -> StagePlan:
        """The same stage with its loss computed through DistributedDataParallel."""
        module = _PlanLoss(plan)
        device_ids = None
        if next(plan.module.parameters()).is_cuda:
            device_ids = [torch.cuda.current_device()]
        # joint training leaves the CNN's own classifier out of the loss
        backbone = getattr(plan.module, "backbone", None)
        unused = backbone is not None and any(p.requires_grad for p in backbone.parameters())
        ddp = DistributedDataParallel(module, device_ids=device_ids, find_unused_parameters=unused)
        return StagePlan(plan.module, plan.named_params, ddp)

    def shard_augment(
        self, augment: Callable[..., torch.Tensor] | None
    ) -> Callable[..., torch.Tensor] | None:
        """`augment` applied as on the whole global batch, keeping this rank's positions."""
        if augment is None:
            return None

        def sharded(x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
            whole = x.new_zeros((x.shape[0] * self.world_size, *x.shape[1:]))
            whole[self.rank :: self.world_size] = x
            return augment(whole, generator)[self.rank :: self.world_size]

        return sharded

    def sum(self, *values: float | torch.Tensor) -> list[float]:
        """Each value summed over the ranks (one all-reduce, float64)."""
        device = "cuda" if dist.get_backend() == "nccl" else "cpu"
        totals = torch.tensor([float(v) for v in values], dtype=torch.float64, device=device)
        dist.all_reduce(totals)
        return totals.tolist()


class ShardSampler(Sampler[int]):
    """Rank `rank`'s indices: positions rank, rank + N, ... of the single-process order.

    With a `generator` the order is `torch.randperm(n, generator)` drawn when iteration starts,
    as a `RandomSampler` does, so the ranks together visit what one process would. `pad`
    repeats indices from the start so every rank gets the same number (as DDP requires).
    """

    def __init__(
        self, n: int, rank: int, world_size: int, generator: torch.Generator | None, pad: bool
    ) -> None:
        self.n, self.rank, self.world_size = n, rank, world_size
        self.generator, self.pad = generator, pad

    def __iter__(self) -> Iterator[int]:
        order = (
            torch.randperm(self.n, generator=self.generator).tolist()
            if self.generator is not None
            else list(range(self.n))
        )
        if self.pad and self.n:
            total = -(-self.n // self.world_size) * self.world_size
            order = (order * (total // self.n + 1))[:total]
        yield from order[self.rank :: self.world_size]

    def __len__(self) -> int:
        if self.pad:
            return -(-self.n // self.world_size)
        return len(range(self.rank, self.n, self.world_size))


class _PlanLoss(nn.Module):
    """A stage's loss as a module, so DDP sees the forward that produces it."""

    def __init__(self, plan: StagePlan) -> None:
        super().__init__()
        self.module = plan.module
        self._loss = plan.loss

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self._loss(x, y)


def current() -> Distributed | None:
    """This rank as training uses it, or None outside a group of two or more processes."""
    group = process_group.current()
    return None if group is None else Distributed(group.rank, group.world_size, group.local_rank)
