"""Class maps written tile by tile, so a map larger than memory is written as it is computed:
`MapWriter`, what the writers of both formats (`s3fn.io.geotiff`, `s3fn.io.envi`) share.

`open_map_writer` (`s3fn.io.dispatch`) gives a writer for a label map (class k stored as k + 1,
0 = no class) or per-class probabilities, as a tiled, compressed GeoTIFF (through rasterio's
GDAL) or an ENVI file (memory-mapped), carrying the input cube's CRS and geotransform so the
map drops into a GIS. The file appears under its name only when `close` succeeds: until then
it is written under a temporary name beside it, and a failed run leaves nothing under the
final name.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType

import numpy as np
from affine import Affine
from rasterio.crs import CRS
from rasterio.errors import CRSError

from s3fn.data.errors import S3FNDataError
from s3fn.io.source import Geotransform

LABELS, PROBABILITIES = "labels", "probabilities"
UNCLASSIFIED = "Unclassified"


class MapWriter:
    """An H x W class map being written: `write(row0, col0, tile)` any number of times, then
    `close()` (or use it as a context manager, which discards the file on an exception).

    Label tiles are h x w class indices 0..K-1, with -1 for pixels of no class (outside the
    mask); probability tiles are h x w x K. The file stores class k as k + 1 and 0 for none.
    """

    def __init__(
        self,
        path: Path,
        height: int,
        width: int,
        class_names: Sequence[str],
        kind: str,
        crs: str | None,
        transform: Geotransform | None,
    ) -> None:
        if kind not in (LABELS, PROBABILITIES):
            raise ValueError(f"{path}: kind={kind!r}; expected {LABELS!r} or {PROBABILITIES!r}")
        if height < 1 or width < 1:
            raise ValueError(f"{path}: map size {height}x{width}; expected at least 1x1")
        names = [str(name) for name in class_names]
        if not names or len(set(names)) != len(names):
            raise S3FNDataError(
                f"{path}: class names {names}; expected at least one, all different"
            )
        if kind == LABELS and len(names) >= np.iinfo(np.uint16).max:
            raise S3FNDataError(
                f"{path}: {len(names)} classes; expected fewer than 65535 for a label map"
            )
        self.path = path
        self.height, self.width = height, width
        self.class_names = names
        self.kind = kind
        self.crs = _crs(path, crs)
        self.transform = _affine(path, transform)
        self.dtype = np.dtype(
            np.float32 if kind == PROBABILITIES else np.uint8 if len(names) < 256 else np.uint16
        )
        self._renames: list[tuple[Path, Path]] = []
        self._done = False
        try:
            self._open()
        except BaseException:
            self.abort()
            raise

    def write(self, row0: int, col0: int, tile: np.ndarray) -> None:
        """Write `tile` with its top-left pixel at (row0, col0) of the map."""
        if self._done:
            raise ValueError(f"{self.path}: the writer is closed")
        tile = np.asarray(tile)
        k = len(self.class_names)
        if self.kind == LABELS:
            if tile.ndim != 2 or tile.dtype.kind not in "iu":
                raise S3FNDataError(
                    f"{self.path}: label tile is {tile.ndim}-D {tile.dtype}; "
                    "expected an h x w array of integer class indices"
                )
            if tile.size and (tile.min() < -1 or tile.max() >= k):
                bad = tile[(tile < -1) | (tile >= k)][0]
                raise S3FNDataError(
                    f"{self.path}: label tile at row {row0}, column {col0} holds class {bad}; "
                    f"expected -1 (no class) to {k - 1}"
                )
            stored = (tile.astype(np.int64) + 1).astype(self.dtype)
        else:
            if tile.ndim != 3 or tile.shape[2] != k or tile.dtype.kind not in "iuf":
                raise S3FNDataError(
                    f"{self.path}: probability tile is {tile.dtype} {tile.shape}; "
                    f"expected h x w x {k} real numbers, one per class"
                )
            stored = tile.astype(np.float32)
        h, w = tile.shape[:2]
        if row0 < 0 or col0 < 0 or row0 + h > self.height or col0 + w > self.width:
            raise S3FNDataError(
                f"{self.path}: tile {h}x{w} at row {row0}, column {col0} does not fit in the "
                f"{self.height}x{self.width} map"
            )
        self._write(row0, col0, stored)

    def close(self) -> None:
        """Finish the file and move it (and its side files) under the final name."""
        if self._done:
            return
        try:
            self._finish()
        except BaseException:
            self.abort()
            raise
        for temporary, final in reversed(self._renames):  # the first file named appears last
            os.replace(temporary, final)
        self._done = True

    def abort(self) -> None:
        """Stop writing and delete the temporary files; nothing appears under the final name."""
        if self._done:
            return
        self._done = True
        self._release()
        for temporary, _ in self._renames:
            temporary.unlink(missing_ok=True)

    def __enter__(self) -> MapWriter:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        if kind is None:
            self.close()
        else:
            self.abort()

    def _temporary(self, final: Path) -> Path:
        """A temporary name beside `final`, renamed to it on `close`."""
        temporary = final.with_name(f".{final.name}.{secrets.token_hex(4)}.part")
        self._renames.append((temporary, final))
        return temporary

    def _open(self) -> None:
        raise NotImplementedError

    def _write(self, row0: int, col0: int, stored: np.ndarray) -> None:
        raise NotImplementedError

    def _finish(self) -> None:
        raise NotImplementedError

    def _release(self) -> None:
        raise NotImplementedError


def class_palette(n: int) -> list[tuple[int, int, int]]:
    """`n` distinct 0-255 RGB colours, those of the report's label-map plots."""
    from s3fn.report.plots import class_colours  # matplotlib, only once a map is written

    colours = class_colours(n)
    return [tuple(round(255 * c) for c in colours(i)[:3]) for i in range(n)]  # type: ignore[misc]


def _crs(path: Path, crs: str | None) -> CRS | None:
    if crs is None:
        return None
    try:
        return CRS.from_user_input(crs)
    except CRSError as exc:
        raise S3FNDataError(f"{path}: crs {str(crs)[:60]!r} is not a CRS ({exc})") from exc


def _affine(path: Path, transform: Geotransform | None) -> Affine | None:
    if transform is None:
        return None
    values = tuple(float(v) for v in transform)
    if len(values) != 6:
        raise S3FNDataError(
            f"{path}: transform has {len(values)} values; expected 6 (a GDAL geotransform)"
        )
    return Affine.from_gdal(*values)
