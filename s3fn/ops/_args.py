"""Conversion of the Python-level arguments of the ops into the integer codes of their schemas."""

from __future__ import annotations

import torch

POOL_CODES: dict[str | None, int] = {None: 0, "avg": 1, "max": 2}
REDUCTION_CODES: dict[str, int] = {"none": 0, "mean": 1, "sum": 2}


def as_padding3(padding: int | tuple[int, ...] | list[int]) -> list[int]:
    """An int or a 3-sequence of non-negative ints, as the schema's int[3]."""
    values = [padding] * 3 if isinstance(padding, int) else list(padding)
    if len(values) != 3 or not all(isinstance(v, int) and v >= 0 for v in values):
        raise ValueError(
            f"padding must be a non-negative int or 3 non-negative ints, got {padding!r}"
        )
    return values


def as_scale(scale: torch.Tensor | float, features: torch.Tensor) -> torch.Tensor:
    """A 0-d floating tensor on the features' device (a Python number becomes one)."""
    if isinstance(scale, torch.Tensor):
        return scale
    if isinstance(scale, bool) or not isinstance(scale, int | float):
        raise TypeError(f"scale must be a 0-d tensor or a number, got {type(scale).__name__}")
    return torch.tensor(float(scale), dtype=features.dtype, device=features.device)
