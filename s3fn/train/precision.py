"""Mixed precision: autocast and loss scaling on CUDA, plain float32 elsewhere."""

from __future__ import annotations

import contextlib

import torch


class Precision:
    """Autocast (bfloat16 where supported, else float16 with a GradScaler) on CUDA when `amp`
    is on; plain float32 elsewhere, where `scaler` is a disabled pass-through."""

    def __init__(self, device: torch.device, amp: bool) -> None:
        self.enabled = amp and device.type == "cuda"
        self.device_type = device.type
        self.dtype = torch.float32
        if self.enabled:
            self.dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        self.scaler = torch.amp.GradScaler(
            "cuda", enabled=self.enabled and self.dtype == torch.float16
        )

    def autocast(self) -> contextlib.AbstractContextManager:
        """The autocast context for forward passes (a no-op when disabled)."""
        if not self.enabled:
            return contextlib.nullcontext()
        return torch.autocast(self.device_type, dtype=self.dtype)
