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
    scaling); `deterministic` asks torch for deterministic kernels. `layer_weight_decay` gives
    parameters whose name starts with a prefix their own decay ((prefix, decay) pairs; the
    paper's per-convolution Keras L2), `label_smoothing` softens the cross-entropy targets of
    the "cnn" stage, and `text_targets` moves that much of each target onto the classes whose
    descriptions are closest (S3FN models; see `s3fn.train.stages.text_soft_targets`).
    `cache_frozen` lets a frozen-backbone stage compute its features once (`s3fn.train.frozen`);
    where its augmentation changes the windows, once for each of `frozen_draws` augmented copies
    of the training windows, which the epochs take in turn. `balance` > 0 draws the training
    windows of each epoch by class (weight n(class) ** -balance, with replacement): 0.5 lifts
    rare classes by the square root of their rarity, 1 trains every class equally often.
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
    layer_weight_decay: tuple[tuple[str, float], ...] = ()
    label_smoothing: float = 0.0
    text_targets: float = 0.0
    cache_frozen: bool = True
    frozen_draws: int = 2
    balance: float = 0.0

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
        if not 0.0 <= self.label_smoothing < 1.0:
            problems.append(f"label_smoothing={self.label_smoothing} (expected 0 <= x < 1)")
        if not 0.0 <= self.text_targets < 1.0:
            problems.append(f"text_targets={self.text_targets} (expected 0 <= x < 1)")
        if any(decay < 0 for _, decay in self.layer_weight_decay):
            problems.append(f"layer_weight_decay={self.layer_weight_decay} (expected >= 0)")
        if self.frozen_draws < 1:
            problems.append(f"frozen_draws={self.frozen_draws} (expected >= 1)")
        if not 0.0 <= self.balance <= 1.0:
            problems.append(f"balance={self.balance} (expected 0 <= x <= 1)")
        if self.num_workers < 0:
            problems.append(f"num_workers={self.num_workers} (expected >= 0)")
        if problems:
            raise ValueError("FitOptions: " + "; ".join(problems))

    def make_optimizer(
        self, named_params: Iterable[tuple[str, torch.nn.Parameter]]
    ) -> torch.optim.Optimizer:
        """The optimizer over the (name, parameter) pairs, one group per weight decay."""
        named_params = list(named_params)
        if callable(self.optimizer):
            return self.optimizer([p for _, p in named_params])
        groups: dict[float, list[torch.nn.Parameter]] = {}
        for name, param in named_params:
            groups.setdefault(self.decay_of(name), []).append(param)
        kind = torch.optim.Adam if self.optimizer == "adam" else torch.optim.AdamW
        return kind(
            [{"params": params, "weight_decay": decay} for decay, params in groups.items()],
            lr=self.lr,
        )

    def decay_of(self, name: str) -> float:
        """The weight decay of the parameter called `name`."""
        for prefix, decay in self.layer_weight_decay:
            if name.startswith(prefix):
                return decay
        return self.weight_decay

    def fingerprint(self) -> dict[str, Any]:
        """The settings a resumed run must share with the run that wrote the checkpoint."""
        return {
            "batch_size": self.batch_size,
            "optimizer": self.optimizer if isinstance(self.optimizer, str) else "custom",
            "lr": self.lr,
            "weight_decay": self.weight_decay,
            "monitor": self.monitor,
            "augment": repr(self.augment),
            "layer_weight_decay": [list(pair) for pair in self.layer_weight_decay],
            "label_smoothing": self.label_smoothing,
            "text_targets": self.text_targets,
            "frozen_draws": self.frozen_draws,
            "balance": self.balance,
        }
