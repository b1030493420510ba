"""Geometry lookup tables (GLT): a georeferenced grid whose every pixel names the pixel of the
unorthorectified swath it shows, as EMIT distributes its products. Maps are made on the swath,
where the sensor's windows are meaningful, and placed on the ground through the table."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np

from s3fn.data.errors import S3FNDataError
from s3fn.io.source import Geotransform


@dataclass(frozen=True, eq=False)
class LookupGrid:
    """For each pixel of an H' x W' grid with a `crs` (WKT) and `transform` (GDAL
    geotransform), the swath pixel it shows (`rows`, `cols`, 0-based; -1 where none)."""

    rows: np.ndarray
    cols: np.ndarray
    crs: str | None
    transform: Geotransform

    @property
    def shape(self) -> tuple[int, int]:
        """(H', W'), the size of the georeferenced grid."""
        return self.rows.shape  # type: ignore[return-value]

    def resample(self, swath: np.ndarray, fill: float, rows: slice = slice(None)) -> np.ndarray:
        """Grid rows `rows` of a swath map (H x W, or H x W x K): each grid pixel takes the
        value of the swath pixel it shows, `fill` where it shows none."""
        source_rows, source_cols = self.rows[rows], self.cols[rows]
        none = source_rows < 0
        picked = np.asarray(swath[np.where(none, 0, source_rows), np.where(none, 0, source_cols)])
        picked[none] = fill
        return picked


def read_emit_glt(
    path: Path,
    location: h5py.Group,
    swath: tuple[int, int],
    crs: str | None,
    transform: Geotransform,
) -> LookupGrid:
    """EMIT's `location/glt_x` / `glt_y`: 1-based crosstrack / downtrack indices into the
    swath, 0 (or a negative fill) where the grid pixel shows none."""
    glt_x, glt_y = (np.asarray(location[name][()], dtype=np.int64) for name in ("glt_x", "glt_y"))
    if glt_x.ndim != 2 or glt_x.shape != glt_y.shape:
        raise S3FNDataError(
            f"{path}: location/glt_x is {glt_x.shape} and glt_y {glt_y.shape}; "
            "expected two 2-D tables of the same shape"
        )
    none = (glt_x <= 0) | (glt_y <= 0)
    for name, table, size in (("glt_y", glt_y, swath[0]), ("glt_x", glt_x, swath[1])):
        if table.max(initial=0) > size:
            raise S3FNDataError(
                f"{path}: location/{name} refers to swath index {table.max()}; "
                f"expected 1 to {size} (0 for none)"
            )
    rows = np.where(none, -1, glt_y - 1)
    cols = np.where(none, -1, glt_x - 1)
    return LookupGrid(rows, cols, crs, transform)
