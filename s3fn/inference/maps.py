"""Scene maps tile by tile: read a tile and its halo, run the network densely, hand it on.

A scene larger than memory is read lazily (`s3fn.io`), one tile plus the half-window
halo its border pixels need, reflect-padded where the halo leaves the scene exactly as the
per-window path pads the whole scene. Every pixel gets the label its own window would get;
the tiling never changes one.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import torch
from torch import nn

from s3fn.data.errors import S3FNDataError
from s3fn.data.nodata import nodata_pixels
from s3fn.data.preprocess import Preprocessor
from s3fn.data.windows import WindowCutter
from s3fn.inference.dense import dense_probabilities, supports_dense
from s3fn.inference.pixels import batched_probabilities, check_reflect_size
from s3fn.io import CubeSource

DEFAULT_TILE = 256


@dataclass(frozen=True, eq=False)
class MapTile:
    """One tile of a map: its top-left pixel, class indices (h x w, -1 outside the mask and at
    no-data pixels) and class probabilities (h x w x K, 0 outside the mask, NaN at no data)."""

    row0: int
    col0: int
    labels: np.ndarray
    probabilities: np.ndarray


class TileSink(Protocol):
    """Where map tiles go: a map file's writer, or a scratch array shared between processes."""

    def write(self, row0: int, col0: int, tile: np.ndarray) -> None:
        """Store `tile` (h x w labels, or h x w x K probabilities) at top-left (row0, col0)."""


def write_tiles(
    tiles: Iterable[MapTile],
    labels: TileSink,
    probabilities: TileSink | None = None,
    on_tile: Callable[[MapTile], None] | None = None,
) -> None:
    """Hand each tile's labels (and probabilities) to the sinks, then to `on_tile` (a bar, say)."""
    for part in tiles:
        labels.write(part.row0, part.col0, part.labels)
        if probabilities is not None:
            probabilities.write(part.row0, part.col0, part.probabilities)
        if on_tile is not None:
            on_tile(part)


def tile_origins(height: int, width: int, tile: int = DEFAULT_TILE) -> list[tuple[int, int]]:
    """Top-left pixels of the `tile` x `tile` tiles that cover an H x W scene, row by row."""
    if tile < 1:
        raise ValueError(f"tile={tile}; expected a positive tile side")
    return [(r, c) for r in range(0, height, tile) for c in range(0, width, tile)]


def map_tiles(
    model: nn.Module,
    preprocessor: Preprocessor,
    to_bands: Callable[[np.ndarray], np.ndarray],
    source: CubeSource,
    window: tuple[int, int],
    *,
    mask: np.ndarray | None = None,
    tile: int = DEFAULT_TILE,
    origins: Iterable[tuple[int, int]] | None = None,
    batch_size: int = 256,
    where: str = "predict_map",
) -> Iterator[MapTile]:
    """The map of `source`, tile by tile (all tiles, or those at `origins`), in that order.

    `to_bands` maps the source's bands to those `preprocessor` takes; `mask` (H x W bool)
    limits the labelled pixels. The network runs densely where it can (`supports_dense`),
    else window by window. No-data pixels get no class; windows reaching them see the
    training mean there (`s3fn.data.nodata`), so pixels whose windows do not keep their labels.
    """
    height, width = source.shape[:2]
    check_reflect_size(height, width, window, where)
    if mask is not None:
        mask = np.asarray(mask, dtype=bool)
        if mask.shape != (height, width):
            raise S3FNDataError(
                f"{where}: mask is {mask.shape}; expected {(height, width)} like the cube"
            )
    for row0, col0 in origins if origins is not None else tile_origins(height, width, tile):
        rows, cols = min(tile, height - row0), min(tile, width - col0)
        yield map_tile(
            model,
            preprocessor,
            to_bands,
            source,
            window,
            (row0, col0, rows, cols),
            mask=mask,
            batch_size=batch_size,
        )


def map_tile(
    model: nn.Module,
    preprocessor: Preprocessor,
    to_bands: Callable[[np.ndarray], np.ndarray],
    source: CubeSource,
    window: tuple[int, int],
    tile: tuple[int, int, int, int],
    *,
    mask: np.ndarray | None = None,
    batch_size: int = 256,
) -> MapTile:
    """One tile of the map of `source`: `tile` is (row0, col0, rows, cols), any size inside the
    scene; `map_tiles` checks the scene and the mask. The tile reads only its own pixels and
    their halo (reflected at the scene's borders), so its labels do not depend on the tiling.
    """
    row0, col0, rows, cols = tile
    planes, nodata = _haloed_tile(source, preprocessor, to_bands, window, row0, col0, rows, cols)
    if supports_dense(model):
        probabilities = dense_probabilities(model, torch.from_numpy(planes), window)
        probabilities = probabilities.cpu().numpy()
    else:
        device = next(model.parameters()).device
        probabilities = _per_window(model, planes, window, rows, cols, batch_size, device)
    labels = probabilities.argmax(axis=2).astype(np.int64)
    if mask is not None:
        outside = ~mask[row0 : row0 + rows, col0 : col0 + cols]
        labels[outside] = -1
        probabilities[outside] = 0.0
    labels[nodata] = -1
    probabilities[nodata] = np.nan
    return MapTile(row0, col0, labels, probabilities)


def _haloed_tile(
    source: CubeSource,
    preprocessor: Preprocessor,
    to_bands: Callable[[np.ndarray], np.ndarray],
    window: tuple[int, int],
    row0: int,
    col0: int,
    rows: int,
    cols: int,
) -> tuple[np.ndarray, np.ndarray]:
    """C x (rows + h - 1) x (cols + w - 1) preprocessed planes: the tile, its halo, and the
    reflection of the scene where the halo leaves it; and the tile's no-data pixels."""
    height, width = source.shape[:2]
    row_index = _reflected(row0, rows, window[0], height)
    col_index = _reflected(col0, cols, window[1], width)
    r_lo, c_lo = int(row_index.min()), int(col_index.min())
    block = source.read(
        slice(r_lo, int(row_index.max()) + 1), slice(c_lo, int(col_index.max()) + 1)
    )
    half = (window[0] // 2, window[1] // 2)
    tile_rows, tile_cols = row_index[half[0] : half[0] + rows], col_index[half[1] : half[1] + cols]
    nodata = nodata_pixels(block[np.ix_(tile_rows - r_lo, tile_cols - c_lo)])
    transformed = preprocessor.transform_pixels(to_bands(block))
    haloed = transformed[np.ix_(row_index - r_lo, col_index - c_lo)]
    return np.ascontiguousarray(np.moveaxis(haloed, 2, 0)), nodata


def _reflected(start: int, count: int, size: int, length: int) -> np.ndarray:
    """Scene indices of a tile's pixels and the window's halo on one axis, reflected at the
    scene's borders as `numpy.pad(mode="reflect")` pads the whole scene."""
    before = size // 2
    index = np.arange(start - before, start + count + size - before - 1)
    index = np.where(index < 0, -index, index)
    return np.where(index >= length, 2 * (length - 1) - index, index)


def _per_window(
    model: nn.Module,
    planes: np.ndarray,
    window: tuple[int, int],
    rows: int,
    cols: int,
    batch_size: int,
    device: torch.device,
) -> np.ndarray:
    cutter = WindowCutter(np.moveaxis(planes, 0, 2), window)
    origins = np.argwhere(np.ones((rows, cols), dtype=bool))
    probabilities = batched_probabilities(
        model, cutter.at_origins, origins, batch_size=batch_size, device=device
    )
    return probabilities.reshape(rows, cols, -1)
