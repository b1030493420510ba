"""The training hyper-parameters of one `fit` call, with their defaults in one place."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import torch

from s3fn.train.augment import Augment

OPTIMIZERS = ("adam", "adamw")
MONITORS = {"val_loss": "min", "val_accuracy": "max", "train_loss": "min"}

OptimizerFactory = Callable[[Iterable[torch.nn.Parameter]], torch.optim.Optimizer]
SchedulerFactory = Callable[[torch.optim.Optimizer], Any]


@dataclass(frozen=True)
class FitOptions:
    """Hyper-parameters of a training stage; `fit(..., **changes)` overrides any of them.

    `optimizer` is "adam" (L2 weight decay, as the paper's Keras L2), "adamw" (decoupled) or a
    factory `params -> Optimizer`; `scheduler` an optional factory `optimizer -> LR scheduler`,
    stepped once per epoch (a ReduceLROnPlateau gets the monitored score). Early stopping
    watches `monitor` ("val_loss", "val_accuracy" or "train_loss") with `patience` (None: never
    stop) and, with `restore_best`, ends on the best epoch's weights. Validation-based
    monitoring needs validation data; without it every epoch runs and the last weights stay.
    `amp` uses mixed precision on CUDA only (bfloat16 where supported, else float16 with loss
    scaling); `deterministic` asks torch for deterministic kernels.
    """

    epochs: int = 100
    batch_size: int = 64
    optimizer: str | OptimizerFactory = "adam"
    lr: float = 1e-3
    weight_decay: float = 1e-4
    scheduler: SchedulerFactory | None = None
    monitor: str = "val_loss"
    patience: int | None = 15
    min_delta: float = 0.0
    restore_best: bool = True
    augment: Augment | None = field(default_factory=Augment)
    num_workers: int = 0
    eval_batch_size: int = 256
    amp: bool = True
    deterministic: bool = True

    def __post_init__(self) -> None:
        problems = []
        if self.epochs < 1:
            problems.append(f"epochs={self.epochs} (expected >= 1)")
        if self.batch_size < 1 or self.eval_batch_size < 1:
            problems.append(f"batch_size={self.batch_size} (expected >= 1)")
        if not self.lr > 0 or self.weight_decay < 0:
            problems.append(f"lr={self.lr}, weight_decay={self.weight_decay} (expected > 0, >= 0)")
        if isinstance(self.optimizer, str) and self.optimizer not in OPTIMIZERS:
            problems.append(f"optimizer={self.optimizer!r} (expected 'adam', 'adamw' or a factory)")
        if self.monitor not in MONITORS:
            problems.append(f"monitor={self.monitor!r} (expected one of {', '.join(MONITORS)})")
        if self.patience is not None and self.patience < 1:
            problems.append(f"patience={self.patience} (expected >= 1 or None)")
        if self.num_workers < 0:
            problems.append(f"num_workers={self.num_workers} (expected >= 0)")
        if problems:
            raise ValueError("FitOptions: " + "; ".join(problems))

    def make_optimizer(self, params: Iterable[torch.nn.Parameter]) -> torch.optim.Optimizer:
        """The optimizer over `params`."""
        if callable(self.optimizer):
            return self.optimizer(params)
        kind = torch.optim.Adam if self.optimizer == "adam" else torch.optim.AdamW
        return kind(params, lr=self.lr, weight_decay=self.weight_decay)

    def fingerprint(self) -> dict[str, Any]:
        """The settings a resumed run must share with the run that wrote the checkpoint."""
        return {
            "batch_size": self.batch_size,
            "optimizer": self.optimizer if isinstance(self.optimizer, str) else "custom",
            "lr": self.lr,
            "weight_decay": self.weight_decay,
            "monitor": self.monitor,
            "augment": repr(self.augment),
        }
