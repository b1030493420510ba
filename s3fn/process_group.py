"""The torch.distributed process group that `torchrun` describes, for training and mapping alike.

`init_from_env()` joins it (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR/PORT): NCCL on GPUs,
gloo on CPU. `current()` says which rank this process is; `barrier()` and `shutdown()` are
no-ops outside a group, so single-process code calls them unconditionally.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

ENV_VARS = ("RANK", "WORLD_SIZE", "LOCAL_RANK")


@dataclass(frozen=True)
class ProcessGroup:
    """This process's place in the group: its rank, the number of ranks, its local GPU."""

    rank: int
    world_size: int
    local_rank: int

    @property
    def is_writer(self) -> bool:
        """Rank 0 alone writes files (checkpoints, logs, reports, maps)."""
        return self.rank == 0


def current() -> ProcessGroup | None:
    """The group this process belongs to, or None when torch.distributed is not initialised."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() < 2:
        return None
    return ProcessGroup(
        dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0"))
    )


def launched_by_torchrun() -> bool:
    """True when the environment describes a process group of more than one process."""
    return all(v in os.environ for v in ENV_VARS) and int(os.environ["WORLD_SIZE"]) > 1


def init_from_env(backend: str | None = None) -> ProcessGroup | None:
    """Join the group torchrun set up (NCCL with CUDA, else gloo); None for a single process.

    With CUDA, each process uses GPU LOCAL_RANK (`torch.cuda.set_device`).
    """
    if not launched_by_torchrun():
        return None
    local_rank = int(os.environ["LOCAL_RANK"])
    cuda = torch.cuda.is_available()
    if cuda:
        torch.cuda.set_device(local_rank)
    if not dist.is_initialized():
        dist.init_process_group(backend or ("nccl" if cuda else "gloo"))
    return current()


def barrier() -> None:
    """Wait for every rank (no-op outside a group)."""
    if dist.is_available() and dist.is_initialized():
        dist.barrier()


def shutdown() -> None:
    """Leave the group (no-op outside a group)."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
