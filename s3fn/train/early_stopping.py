"""Early stopping on a monitored score, keeping a copy of the best weights."""

from __future__ import annotations

import copy
import math
from typing import Any

import torch
from torch import nn


class EarlyStopping:
    """Tracks a score per epoch; stops after `patience` epochs without an improvement.

    An improvement is a score lower (`mode="min"`) or higher (`"max"`) than the best by more
    than `min_delta`. The best epoch's weights are kept (on the CPU) for `restore`.
    `patience=None` never stops but still keeps the best weights.
    """

    def __init__(self, patience: int | None = 15, *, mode: str = "min", min_delta: float = 0.0):
        if mode not in ("min", "max"):
            raise ValueError(f"EarlyStopping: mode={mode!r}; expected 'min' or 'max'")
        if patience is not None and patience < 1:
            raise ValueError(f"EarlyStopping: patience={patience}; expected >= 1 or None")
        self.patience = patience
        self.mode = mode
        self.min_delta = float(min_delta)
        self.best_score = math.inf if mode == "min" else -math.inf
        self.best_epoch: int | None = None
        self.bad_epochs = 0
        self.best_state: dict[str, torch.Tensor] | None = None

    @property
    def should_stop(self) -> bool:
        """Whether `patience` epochs in a row brought no improvement."""
        return self.patience is not None and self.bad_epochs >= self.patience

    def step(self, score: float, epoch: int, model: nn.Module) -> bool:
        """Record epoch `epoch`'s score; True if it improved (the weights are then copied)."""
        if self.mode == "min":
            improved = score < self.best_score - self.min_delta
        else:
            improved = score > self.best_score + self.min_delta
        if improved:
            self.best_score = float(score)
            self.best_epoch = epoch
            self.bad_epochs = 0
            self.best_state = {
                k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()
            }
        else:
            self.bad_epochs += 1
        return improved

    def restore(self, model: nn.Module) -> None:
        """Load the best weights into `model` (nothing happens before a first improvement)."""
        if self.best_state is not None:
            model.load_state_dict(self.best_state)

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue after a resume."""
        return copy.copy(self.__dict__)

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what `state_dict` returned."""
        self.__dict__.update(state)
