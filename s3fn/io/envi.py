"""ENVI images (a text `.hdr` and a raw data file): read memory-mapped through the `spectral`
package, and class maps written through a memory map as ENVI Classification / Standard files."""

from __future__ import annotations

import tempfile
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import rasterio
import spectral.io.envi as envi
from affine import Affine
from rasterio.crs import CRS
from rasterio.errors import NotGeoreferencedWarning

from s3fn.data.cube import fwhm_to_nm, wavelengths_to_nm
from s3fn.data.errors import S3FNDataError
from s3fn.io.geotiff import georeferencing, open_gdal
from s3fn.io.map_writer import LABELS, PROBABILITIES, UNCLASSIFIED, MapWriter, class_palette
from s3fn.io.source import ArraySource, CubeSource

# ENVI "data type" codes that hold real numbers, and their item sizes in bytes.
_ITEM_SIZES = {1: 1, 2: 2, 3: 4, 4: 4, 5: 8, 12: 2, 13: 4, 14: 8, 15: 8}
_DATA_SUFFIXES = ("", ".img", ".dat", ".raw", ".bsq", ".bil", ".bip", ".bin", ".sli")

# Header fields through which GDAL's ENVI driver writes (and reads back) georeferencing.
_ENVI_GEO_FIELDS = ("map info", "projection info", "coordinate system string")


def header_for(path: Path) -> Path | None:
    """The ENVI header of `path`: itself if it is a `.hdr`, else a `.hdr` beside the data file."""
    if path.suffix.lower() == ".hdr":
        return path
    for candidate in (path.with_suffix(".hdr"), path.with_name(path.name + ".hdr")):
        if candidate.is_file():
            return candidate
    return None


@dataclass(frozen=True, eq=False)
class EnviImage:
    """An opened ENVI image: its pixels memory-mapped as HxWxB in the file's dtype, and what the
    header says about them (band centres and widths in nm, usable bands, reflectance scale,
    the value of pixels without data)."""

    header_path: Path
    data_path: Path
    header: dict
    pixels: np.ndarray
    wavelengths: np.ndarray | None
    fwhm: np.ndarray | None
    good_bands: np.ndarray | None
    scale: float
    ignore_value: float | None


def open_envi(path: Path) -> EnviImage:
    """Open an ENVI image given its header or data file, checking the header against the file."""
    header_path = header_for(path)
    if header_path is None or not header_path.is_file():
        raise FileNotFoundError(
            f"{path}: ENVI header not found; expected {path.with_suffix('.hdr')}"
        )
    data_path = path if path != header_path else _data_file(header_path)
    header = _read_header(header_path)
    lines, samples, bands = (
        _int_field(header, header_path, f) for f in ("lines", "samples", "bands")
    )
    data_type = _int_field(header, header_path, "data type")
    if data_type not in _ITEM_SIZES:
        raise S3FNDataError(
            f"{header_path}: header field 'data type' is {data_type}; expected one of "
            f"{sorted(_ITEM_SIZES)} (real numbers)"
        )
    if header.get("interleave", "").strip().lower() not in {"bsq", "bil", "bip"}:
        raise S3FNDataError(
            f"{header_path}: header field 'interleave' is {header.get('interleave')!r}; "
            "expected bsq, bil or bip"
        )
    if header.get("file type", "").strip().lower() == "envi spectral library":
        raise S3FNDataError(
            f"{header_path}: file type is 'ENVI Spectral Library'; expected an image"
        )
    offset = _int_field(header, header_path, "header offset", default=0)
    expected = offset + lines * samples * bands * _ITEM_SIZES[data_type]
    actual = data_path.stat().st_size
    if actual != expected:
        raise S3FNDataError(
            f"{header_path}: data file {data_path.name} has {actual} bytes but the header "
            f"(lines={lines}, samples={samples}, bands={bands}, data type={data_type}, "
            f"header offset={offset}) needs {expected}"
        )
    image = envi.open(str(header_path), str(data_path))
    wavelengths = _band_numbers(header, header_path, "wavelength", bands)
    fwhm = _band_numbers(header, header_path, "fwhm", bands)
    bbl = _band_numbers(header, header_path, "bbl", bands)
    unit = header.get("wavelength units")
    return EnviImage(
        header_path=header_path,
        data_path=data_path,
        header=header,
        pixels=np.asarray(image.open_memmap(interleave="bip")),
        wavelengths=None
        if wavelengths is None
        else wavelengths_to_nm(wavelengths, unit, str(header_path)),
        fwhm=None
        if fwhm is None or wavelengths is None
        else fwhm_to_nm(fwhm, wavelengths, unit, str(header_path)),
        good_bands=None if bbl is None else bbl != 0,
        scale=_float_field(header, header_path, "reflectance scale factor", default=1.0),
        ignore_value=_float_field(header, header_path, "data ignore value", default=None),
    )


def open_envi_source(path: Path) -> CubeSource:
    """An ENVI image as a source: memory-mapped, with its scale, no-data value and map info."""
    image = open_envi(path)
    bands = image.pixels.shape[2]
    scaling = None
    if image.scale not in (0.0, 1.0):
        scaling = (np.full(bands, 1.0 / image.scale), np.zeros(bands))
    nodata = None
    if image.ignore_value is not None:
        nodata = (np.full(bands, image.ignore_value), np.ones(bands, bool))
    crs, transform = None, None
    if "map info" in image.header or "coordinate system string" in image.header:
        # GDAL reads ENVI map info for every projection ENVI writes; reuse it, don't re-parse it.
        dataset = open_gdal(str(image.data_path), image.header_path, "ENVI")
        with dataset:
            crs, transform = georeferencing(dataset)
    return ArraySource(
        image.pixels,
        path,
        "image",
        wavelengths=image.wavelengths,
        fwhm=image.fwhm,
        good_bands=image.good_bands,
        crs=crs,
        transform=transform,
        nodata=nodata,
        scaling=scaling,
        file_format="ENVI",
    )


def _data_file(header_path: Path) -> Path:
    stem = header_path.with_suffix("")
    for suffix in _DATA_SUFFIXES:
        for candidate in (
            stem.with_name(stem.name + suffix),
            stem.with_name(stem.name + suffix.upper()),
        ):
            if candidate.is_file():
                return candidate
    raise FileNotFoundError(
        f"{header_path}: ENVI data file not found; expected {stem.name} with one of the suffixes "
        f"{', '.join(s or '(none)' for s in _DATA_SUFFIXES)} beside the header"
    )


def _read_header(header_path: Path) -> dict:
    try:
        return envi.read_envi_header(str(header_path))
    except Exception as exc:  # spectral raises its own exception types for bad headers
        raise S3FNDataError(f"{header_path}: not a readable ENVI header ({exc})") from exc


def _int_field(header: dict, header_path: Path, field: str, default: int | None = None) -> int:
    value = header.get(field)
    if value is None and default is not None:
        return default
    try:
        number = int(str(value).strip())
    except ValueError:
        number = -1
    if number < 0:
        raise S3FNDataError(
            f"{header_path}: header field '{field}' is {value!r}; expected a non-negative integer"
        )
    return number


def _float_field(
    header: dict, header_path: Path, field: str, default: float | None
) -> float | None:
    value = header.get(field)
    if value is None:
        return default
    try:
        return float(str(value).strip())
    except ValueError as exc:
        raise S3FNDataError(
            f"{header_path}: header field '{field}' is {value!r}; expected a number"
        ) from exc


def _band_numbers(header: dict, header_path: Path, field: str, bands: int) -> np.ndarray | None:
    values = header.get(field)
    if values is None:
        return None
    try:
        numbers = np.array([float(v) for v in values], dtype=np.float64)
    except ValueError as exc:
        raise S3FNDataError(
            f"{header_path}: header field '{field}' is not numeric ({exc}); expected numbers"
        ) from exc
    if numbers.shape != (bands,):
        raise S3FNDataError(
            f"{header_path}: header field '{field}' has {numbers.size} values; "
            f"expected {bands}, one per band"
        )
    return numbers


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
