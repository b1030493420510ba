"""Training-time augmentation of window batches: the paper's random global scale, flips, rot90."""

from __future__ import annotations

import functools
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Augment:
    """Random per-window transforms of an N x [1 x] C x h x w batch.

    `scale=(lo, hi)` multiplies each window by a factor drawn uniformly in [lo, hi] (the paper:
    0.9..1.1; None turns it off); `flip` mirrors each window left-right and/or up-down with
    probability 1/2 each; `rot90` rotates each (square) window by a random multiple of 90 degrees;
    `noise` adds Gaussian noise of that standard deviation (in the standardised PCA units the
    windows arrive in), which keeps small training sets from fitting each pixel's exact values.
    """

    scale: tuple[float, float] | None = (0.9, 1.1)
    flip: bool = False
    rot90: bool = False
    noise: float = 0.0

    def __post_init__(self) -> None:
        if self.scale is not None:
            lo, hi = self.scale
            if not 0 < lo <= hi:
                raise ValueError(f"Augment: scale={self.scale!r}; expected 0 < lo <= hi")
        if not self.noise >= 0:
            raise ValueError(f"Augment: noise={self.noise!r}; expected >= 0")

    @property
    def changes_input(self) -> bool:
        """Whether any transform is on (a scale range of one value still rescales)."""
        return self.scale is not None or self.flip or self.rot90 or self.noise > 0

    def __call__(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """The augmented batch; all draws come from `generator` (on the batch's device)."""
        n = x.shape[0]
        shape = (n,) + (1,) * (x.ndim - 1)

        def coin() -> torch.Tensor:
            return torch.rand(shape, generator=generator, device=x.device) < 0.5

        if self.scale is not None:
            lo, hi = self.scale
            factor = torch.rand(shape, generator=generator, device=x.device, dtype=x.dtype)
            x = x * (lo + (hi - lo) * factor)
        if self.flip or self.rot90:
            if self.rot90 and x.shape[-1] != x.shape[-2]:
                raise ValueError(
                    f"Augment: rot90 needs square windows, got {x.shape[-2]}x{x.shape[-1]}"
                )
            codes = torch.zeros(n, dtype=torch.long, device=x.device)
            bits = (0, 1) * self.flip + (2, 3) * self.rot90
            for bit in bits:
                codes |= coin().view(n).long() << bit
            x = _move_pixels(x, codes)
        if self.noise > 0:
            x = x + self.noise * torch.randn(
                x.shape, generator=generator, device=x.device, dtype=x.dtype
            )
        return x


@functools.cache
def _pixel_orders(h: int, w: int, device: torch.device) -> torch.Tensor:
    """For each code (bit 0: flip left-right, 1: flip up-down, 2: rotate by 90 degrees,
    3: by 180; applied in that order), the source pixel of each output pixel: (16, h*w) for
    square windows, (4, h*w) (the flips) otherwise."""
    grid = torch.arange(h * w, device=device).view(h, w)
    orders = []
    for code in range(16 if h == w else 4):
        order = grid.flip(-1) if code & 1 else grid
        order = order.flip(-2) if code & 2 else order
        order = order.rot90(1, (-2, -1)) if code & 4 else order
        order = order.rot90(2, (-2, -1)) if code & 8 else order
        orders.append(order.reshape(-1))
    return torch.stack(orders)


def _move_pixels(x: torch.Tensor, codes: torch.Tensor) -> torch.Tensor:
    """Each window's flips and rotations (`codes`, see `_pixel_orders`) as one gather: four
    whole-batch `where` passes cost several times more on the windows training uses."""
    n, h, w = x.shape[0], x.shape[-2], x.shape[-1]
    flat = x.reshape(n, -1, h * w)
    index = _pixel_orders(h, w, x.device)[codes]
    moved = torch.gather(flat, 2, index[:, None, :].expand(flat.shape))
    return moved.view(x.shape)
