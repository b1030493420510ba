"""Spatial windows: where they may go (inside a mask, centred on labelled pixels) and cutting them.

A window is a Bxhxw float32 array. Origins are the (row, column) of a window's top-left pixel;
centres are the pixel a window is centred on, at offset (h // 2, w // 2) inside it.
"""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from s3fn.data.errors import S3FNDataError

Size = tuple[int, int]


def as_size(size: int | tuple[int, int]) -> Size:
    """Normalise a window size given as `n` or `(h, w)` to `(h, w)`, both >= 1."""
    h, w = (size, size) if isinstance(size, int) else size
    if int(h) < 1 or int(w) < 1:
        raise S3FNDataError(f"window size {size!r}: expected positive integers")
    return int(h), int(w)


def window_sums(mask: np.ndarray, size: int | tuple[int, int], *, centred: bool) -> np.ndarray:
    """For every pixel, the number of true `mask` pixels inside the window anchored there.

    The window is anchored at its top-left pixel, or at its centre when `centred`; parts of it
    outside the image count zero. Computed in O(H*W) with a summed-area table.
    """
    h, w = as_size(size)
    height, width = mask.shape
    table = np.zeros((height + 1, width + 1), dtype=np.int64)
    table[1:, 1:] = np.asarray(mask, dtype=np.int64).cumsum(0).cumsum(1)
    dy, dx = (h // 2, w // 2) if centred else (0, 0)
    r0 = np.clip(np.arange(height) - dy, 0, height)
    r1 = np.clip(np.arange(height) - dy + h, 0, height)
    c0 = np.clip(np.arange(width) - dx, 0, width)
    c1 = np.clip(np.arange(width) - dx + w, 0, width)
    return (
        table[np.ix_(r1, c1)]
        - table[np.ix_(r0, c1)]
        - table[np.ix_(r1, c0)]
        + table[np.ix_(r0, c0)]
    )


def valid_origins(mask: np.ndarray, size: int | tuple[int, int]) -> np.ndarray:
    """(K, 2) top-left corners of every window that lies fully inside `mask`, in raster order."""
    h, w = as_size(size)
    return np.argwhere(window_sums(mask, (h, w), centred=False) == h * w)


def covered_origins(mask: np.ndarray, size: int | tuple[int, int]) -> np.ndarray:
    """(K, 2) top-left corners of the windows inside the image that best cover `mask`: those at
    least half on the mask, or the best covered where none is. For objects smaller than the
    window, whose windows must then take in some background."""
    h, w = as_size(size)
    height, width = mask.shape
    if height < h or width < w:
        raise S3FNDataError(
            f"a {height}x{width} image is smaller than a {h}x{w} window; expected an image at "
            "least the window's size"
        )
    coverage = window_sums(mask, (h, w), centred=False)[: height - h + 1, : width - w + 1]
    best = int(coverage.max(initial=0))
    if best == 0:
        raise S3FNDataError(f"the mask of the {height}x{width} image is empty; expected an object")
    return np.argwhere(coverage >= min(best, -(-h * w // 2)))


def sample_origins(
    mask: np.ndarray, n: int, size: int | tuple[int, int], rng: np.random.Generator
) -> np.ndarray:
    """`n` random top-left corners of windows fully inside `mask`, as an (n, 2) int64 array.

    Distinct positions are drawn while there are enough of them; a mask with fewer than `n` valid
    positions gives each of them once and repeats random ones to make up `n`. An object too
    small for any window takes the windows that best cover it (`covered_origins`).
    """
    origins = valid_origins(mask, size)
    if len(origins) == 0:
        origins = covered_origins(mask, size)
    if n <= len(origins):
        picked = rng.choice(len(origins), size=n, replace=False)
    else:
        extra = rng.choice(len(origins), size=n - len(origins), replace=True)
        picked = np.concatenate([rng.permutation(len(origins)), extra])
    return origins[np.sort(picked)]


class WindowCutter:
    """Cuts many (overlapping) windows from one HxWxC image, laid out band-first once for speed.

    Windows centred near the border are completed by reflection (`numpy.pad(mode="reflect")`).
    """

    def __init__(self, image: np.ndarray, size: int | tuple[int, int]) -> None:
        if image.ndim != 3:
            raise S3FNDataError(f"image of shape {image.shape}: expected HxWxC")
        self.size = as_size(size)
        self._image = image
        self._planes: np.ndarray | None = None
        self._padded: np.ndarray | None = None

    def at_origins(self, origins: np.ndarray) -> np.ndarray:
        """Windows whose top-left corners are `origins` (n, 2); each must lie inside the image."""
        origins = np.asarray(origins, dtype=np.int64).reshape(-1, 2)
        h, w = self.size
        height, width = self._image.shape[:2]
        outside = (
            (origins[:, 0] < 0)
            | (origins[:, 1] < 0)
            | (origins[:, 0] + h > height)
            | (origins[:, 1] + w > width)
        )
        if outside.any():
            row, col = origins[np.argmax(outside)]
            raise S3FNDataError(
                f"window origin ({row}, {col}): a {h}x{w} window leaves the {height}x{width} image"
            )
        if self._planes is None:
            self._planes = np.ascontiguousarray(np.moveaxis(self._image, 2, 0), dtype=np.float32)
        return _gather(self._planes, origins, self.size)

    def at_centres(self, centres: np.ndarray) -> np.ndarray:
        """Windows centred on `centres` (n, 2), reflect-padded where they cross the border."""
        centres = np.asarray(centres, dtype=np.int64).reshape(-1, 2)
        height, width = self._image.shape[:2]
        if ((centres < 0) | (centres >= (height, width))).any():
            raise S3FNDataError(f"window centres must lie inside the {height}x{width} image")
        if self._padded is None:
            h, w = self.size
            pad = ((0, 0), (h // 2, h - h // 2 - 1), (w // 2, w - w // 2 - 1))
            planes = np.moveaxis(self._image, 2, 0).astype(np.float32, copy=False)
            self._padded = np.ascontiguousarray(np.pad(planes, pad, mode="reflect"))
        return _gather(self._padded, centres, self.size)


def _gather(planes: np.ndarray, origins: np.ndarray, size: Size) -> np.ndarray:
    views = sliding_window_view(planes, size, axis=(1, 2))  # C x H' x W' x h x w
    return np.ascontiguousarray(views.transpose(1, 2, 0, 3, 4)[origins[:, 0], origins[:, 1]])
