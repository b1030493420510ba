"""Shape checks shared by the models: window sizes and the N x 1 x C x h x w input layout."""

from __future__ import annotations

import torch


def as_window(window: int | tuple[int, int] | list[int]) -> tuple[int, int]:
    """`n` or `(h, w)` as `(h, w)`, both >= 1."""
    h, w = (window, window) if isinstance(window, int) else tuple(window)
    if int(h) < 1 or int(w) < 1:
        raise ValueError(f"window={window!r}: expected positive integers")
    return int(h), int(w)


def check_counts(in_bands: int, n_classes: int) -> None:
    """Refuse fewer than one input band or two classes."""
    if in_bands < 1 or n_classes < 2:
        raise ValueError(
            f"in_bands={in_bands}, n_classes={n_classes}: expected in_bands >= 1, n_classes >= 2"
        )


def as_model_input(
    x: torch.Tensor, bands: int, window: tuple[int, int] | None, model: str
) -> torch.Tensor:
    """Check a batch of windows and return it as N x 1 x C x h x w (N x C x h x w is accepted).

    `window` None accepts any spatial size.
    """
    if x.ndim == 4:
        x = x.unsqueeze(1)
    if x.ndim != 5 or x.shape[1] != 1:
        raise ValueError(
            f"{model}: input of shape {tuple(x.shape)}; expected N x 1 x C x h x w or N x C x h x w"
        )
    if x.shape[2] != bands:
        raise ValueError(
            f"{model}: input has {x.shape[2]} bands (components); this model takes {bands}"
        )
    if window is not None and tuple(x.shape[3:]) != window:
        raise ValueError(
            f"{model}: input windows are {x.shape[3]}x{x.shape[4]}; this model takes "
            f"{window[0]}x{window[1]}"
        )
    return x
