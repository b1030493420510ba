"""Swath maps placed on the ground through a geometry lookup table (`s3fn.io.glt`): the map is
made on the swath, kept in memory (a swath such as EMIT's is a few thousand pixels a side), and
written on the table's georeferenced grid, block by block."""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import ExitStack
from pathlib import Path

import numpy as np

from s3fn.io import LABELS, open_map_writer
from s3fn.io.glt import LookupGrid

# Grid rows written at a time.
BLOCK_ROWS = 256


class ArraySink:
    """An array that takes map tiles as a map writer does."""

    def __init__(self, array: np.ndarray) -> None:
        self.array = array

    def write(self, row0: int, col0: int, tile: np.ndarray) -> None:
        """Store `tile` with its top-left pixel at (row0, col0)."""
        self.array[row0 : row0 + tile.shape[0], col0 : col0 + tile.shape[1]] = tile


def write_on_grid(
    lookup: LookupGrid,
    maps: Sequence[tuple[Path, str, np.ndarray]],
    class_names: Sequence[str],
) -> list[Path]:
    """Write each swath map (path, kind, H x W labels or H x W x K probabilities) on the lookup
    table's grid, with its CRS and transform; grid pixels that show no swath pixel get no class
    (labels) or NaN (probabilities), as no-data pixels do. Returns the files."""
    height, width = lookup.shape
    with ExitStack() as stack:
        writers = [
            (
                stack.enter_context(
                    open_map_writer(
                        path,
                        height=height,
                        width=width,
                        class_names=class_names,
                        crs=lookup.crs,
                        transform=lookup.transform,
                        kind=kind,
                    )
                ),
                swath,
                -1 if kind == LABELS else np.nan,
            )
            for path, kind, swath in maps
        ]
        for row0 in range(0, height, BLOCK_ROWS):
            rows = slice(row0, min(height, row0 + BLOCK_ROWS))
            for writer, swath, fill in writers:
                writer.write(row0, 0, lookup.resample(swath, fill, rows))
    return [writer.path for writer, _, _ in writers]
