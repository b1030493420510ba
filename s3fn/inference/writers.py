"""Class maps written tile by tile, so a map larger than memory is written as it is computed.

`open_map_writer` gives a writer for a label map (class k stored as k + 1, 0 = no class) or
per-class probabilities, as a tiled, compressed GeoTIFF (through rasterio's GDAL) or an ENVI
file (memory-mapped), carrying the input cube's CRS and geotransform so the map drops into a
GIS. The file appears under its name only when `close` succeeds: until then it is written
under a temporary name beside it, and a failed run leaves nothing under the final name.
"""

from __future__ import annotations

import os
import secrets
import tempfile
import warnings
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from xml.etree import ElementTree

import numpy as np
import rasterio
from affine import Affine
from rasterio.crs import CRS
from rasterio.errors import CRSError, NotGeoreferencedWarning
from rasterio.windows import Window

from s3fn.data.errors import S3FNDataError

LABELS, PROBABILITIES = "labels", "probabilities"
UNCLASSIFIED = "Unclassified"
GEOTIFF_SUFFIXES = (".tif", ".tiff")
ENVI_SUFFIXES = (".hdr", ".img", ".dat", ".bsq", ".bip", ".raw", ".bin")
Geotransform = tuple[float, float, float, float, float, float]

# Header fields through which GDAL's ENVI driver writes (and reads back) georeferencing.
_ENVI_GEO_FIELDS = ("map info", "projection info", "coordinate system string")
_BLOCK = 256


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


class GeoTiffMapWriter(MapWriter):
    """A tiled, deflate-compressed GeoTIFF. A label map has nodata 0, a colour table and the
    class names as GDAL category names (in the `.aux.xml` side file, where GDAL keeps them);
    a probability map has one float32 band per class, named after it, and nodata NaN."""

    _dataset = None

    def _open(self) -> None:
        k = len(self.class_names)
        labels = self.kind == LABELS
        profile = {
            "driver": "GTiff",
            "height": self.height,
            "width": self.width,
            "count": 1 if labels else k,
            "dtype": self.dtype.name,
            "crs": self.crs,
            "transform": self.transform,
            "nodata": 0 if labels else np.nan,
            "tiled": True,
            "blockxsize": _BLOCK,
            "blockysize": _BLOCK,
            "compress": "deflate",
            "predictor": 2 if labels else 3,
            "BIGTIFF": "IF_SAFER",
        }
        target = self._temporary(self.path)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", NotGeoreferencedWarning)
            self._dataset = rasterio.open(target, "w", **profile)
        if labels:
            colours = [(0, 0, 0, 0)] + [(*rgb, 255) for rgb in class_palette(k)]
            self._dataset.write_colormap(1, dict(enumerate(colours)))
            self._dataset.set_band_description(1, "class")
            self._aux = self._temporary(self.path.with_name(self.path.name + ".aux.xml"))
        else:
            for band, name in enumerate(self.class_names, start=1):
                self._dataset.set_band_description(band, name)

    def _write(self, row0: int, col0: int, stored: np.ndarray) -> None:
        bands = stored[None] if stored.ndim == 2 else np.moveaxis(stored, -1, 0)
        window = Window(col0, row0, stored.shape[1], stored.shape[0])
        self._dataset.write(bands, window=window)  # type: ignore[union-attr]

    def _finish(self) -> None:
        self._release()
        if self.kind == LABELS:
            _write_category_names(self._aux, [UNCLASSIFIED, *self.class_names])
        else:  # a label map's side file left from an earlier run would describe this one wrongly
            self.path.with_name(self.path.name + ".aux.xml").unlink(missing_ok=True)

    def _release(self) -> None:
        if self._dataset is not None:
            self._dataset.close()
            self._dataset = None


class EnviMapWriter(MapWriter):
    """An ENVI file written through a memory map: a label map as `ENVI Classification`
    (class names, colour lookup), probabilities as float32 band-interleaved-by-pixel bands
    named after the classes. `path` is the header (.hdr, data beside it as .img) or the data
    file (header beside it as .hdr)."""

    _map: np.memmap | None = None

    def _open(self) -> None:
        for name in self.class_names:
            if any(c in name for c in ",{}\n"):
                raise S3FNDataError(
                    f"{self.path}: class name {name!r} holds ',', '{{', '}}' or a line break; "
                    "expected none in an ENVI header list"
                )
        if self.path.suffix.lower() == ".hdr":
            self.header_path, self.data_path = self.path, self.path.with_suffix(".img")
        else:
            self.header_path, self.data_path = self.path.with_suffix(".hdr"), self.path
        self._geo_lines = _envi_georeferencing(self.crs, self.transform)
        shape = (self.height, self.width)
        if self.kind == PROBABILITIES:
            shape += (len(self.class_names),)
        self._header = self._temporary(self.header_path)
        target = self._temporary(self.data_path)
        self._map = np.memmap(target, dtype=self.dtype.newbyteorder("<"), mode="w+", shape=shape)

    def _write(self, row0: int, col0: int, stored: np.ndarray) -> None:
        h, w = stored.shape[:2]
        self._map[row0 : row0 + h, col0 : col0 + w] = stored  # type: ignore[index]

    def _finish(self) -> None:
        self._release()
        self._header.write_text(self._header_text(), encoding="utf-8")

    def _release(self) -> None:
        if self._map is not None:
            self._map.flush()
            self._map = None

    def _header_text(self) -> str:
        k = len(self.class_names)
        labels = self.kind == LABELS
        fields = {
            "description": f"{{s3fn {self.kind} map}}",
            "samples": self.width,
            "lines": self.height,
            "bands": 1 if labels else k,
            "header offset": 0,
            "file type": "ENVI Classification" if labels else "ENVI Standard",
            "data type": {"uint8": 1, "uint16": 12, "float32": 4}[self.dtype.name],
            "interleave": "bsq" if labels else "bip",
            "byte order": 0,
        }
        if labels:
            colours = [(0, 0, 0), *class_palette(k)]
            fields["classes"] = k + 1
            fields["class names"] = _envi_list([UNCLASSIFIED, *self.class_names])
            fields["class lookup"] = _envi_list([v for rgb in colours for v in rgb])
            fields["band names"] = "{class}"
        else:
            fields["band names"] = _envi_list(self.class_names)
        lines = ["ENVI", *(f"{name} = {value}" for name, value in fields.items())]
        return "\n".join([*lines, *self._geo_lines]) + "\n"


def open_map_writer(
    path: str | os.PathLike,
    *,
    height: int,
    width: int,
    class_names: Sequence[str],
    crs: str | None = None,
    transform: Geotransform | None = None,
    kind: str = LABELS,
) -> MapWriter:
    """A writer of an H x W label (`kind="labels"`) or probability map at `path`.

    The format follows the suffix: .tif / .tiff for GeoTIFF, .hdr / .img / .dat (...) for
    ENVI. `crs` (WKT or "EPSG:n") and `transform` (GDAL geotransform) come from the input
    cube's source; without them the map is written plain, not georeferenced.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix in GEOTIFF_SUFFIXES:
        writer: type[MapWriter] = GeoTiffMapWriter
    elif suffix in ENVI_SUFFIXES:
        writer = EnviMapWriter
    else:
        raise S3FNDataError(
            f"{path}: unsupported map format {suffix or '(no suffix)'!r}; expected "
            f"GeoTIFF ({', '.join(GEOTIFF_SUFFIXES)}) or ENVI ({', '.join(ENVI_SUFFIXES)})"
        )
    return writer(path, height, width, class_names, kind, crs, transform)


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


def _write_category_names(path: Path, names: list[str]) -> None:
    """GDAL's PAM side file giving band 1 its category names (what `gdalinfo` lists)."""
    root = ElementTree.Element("PAMDataset")
    band = ElementTree.SubElement(root, "PAMRasterBand", band="1")
    categories = ElementTree.SubElement(band, "CategoryNames")
    for name in names:
        ElementTree.SubElement(categories, "Category").text = name
    ElementTree.indent(root)
    # no XML declaration: GDAL (3.6) ignores a side file that starts with one
    path.write_text(ElementTree.tostring(root, encoding="unicode") + "\n", encoding="utf-8")


def _envi_georeferencing(crs: CRS | None, transform: Affine | None) -> list[str]:
    """The ENVI header lines that place the map, as GDAL's ENVI driver writes them (and so
    reads them back): map info, projection info, coordinate system string."""
    if crs is None and transform is None:
        return []
    with tempfile.TemporaryDirectory() as folder:
        probe = Path(folder) / "georeferencing.img"
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", NotGeoreferencedWarning)
            with rasterio.open(
                probe,
                "w",
                driver="ENVI",
                width=1,
                height=1,
                count=1,
                dtype="uint8",
                crs=crs,
                transform=transform,
            ):
                pass
        text = probe.with_suffix(".hdr").read_text()
    return [line for line in text.splitlines() if line.split("=", 1)[0].strip() in _ENVI_GEO_FIELDS]


def _envi_list(values: Sequence[object]) -> str:
    return "{" + ", ".join(str(v) for v in values) + "}"
