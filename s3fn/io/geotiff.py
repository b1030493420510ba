"""GeoTIFF: cubes read through GDAL (rasterio), GeoTIFF / COG and NetCDF other than EMIT, with
the band centres the product stores (GDAL band items, the IMAGERY domain, an EnMAP
METADATA.XML) and its scaling to reflectance; and class maps written as tiled, compressed
GeoTIFFs."""

from __future__ import annotations

import re
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from xml.etree import ElementTree

import numpy as np
import rasterio
from rasterio.errors import NotGeoreferencedWarning, RasterioIOError
from rasterio.io import DatasetReader
from rasterio.windows import Window

from s3fn.data.cube import fwhm_to_nm, wavelengths_to_nm
from s3fn.data.errors import S3FNDataError
from s3fn.io.map_writer import LABELS, UNCLASSIFIED, MapWriter, class_palette
from s3fn.io.source import CubeSource, Geotransform, no_key

# EnMAP keeps its band centres, widths, gains and offsets in <product>-METADATA.XML beside
# the image.
_ENMAP_IMAGE = re.compile(r"(?P<product>.+)-SPECTRAL_IMAGE(?:_COG)?", re.IGNORECASE)

_ENMAP_BANDS = "specific/bandCharacterisation/bandID/"

# GDAL writes a multi-band raster to NetCDF as one 2-D variable per band.
_GDAL_BAND_VARIABLE = re.compile(r"Band\d+")

# A written map's tiles are _BLOCK x _BLOCK pixels.
_BLOCK = 256


class RasterSource(CubeSource):
    """A source read through GDAL windows: the bands of one or more rasterio datasets."""

    def __init__(
        self, parts: list[tuple[DatasetReader, list[int]]], path: Path, field: str, **meta
    ) -> None:
        first = parts[0][0]
        bands = sum(len(indexes) for _, indexes in parts)
        super().__init__(path, (first.height, first.width, bands), field, **meta)
        self._parts = parts

    def _read(self, r0: int, r1: int, c0: int, c1: int) -> np.ndarray:
        window = Window(c0, r0, c1 - c0, r1 - r0)
        stacked = np.concatenate(
            [dataset.read(indexes, window=window) for dataset, indexes in self._parts]
        )
        return np.moveaxis(stacked, 0, -1)  # bands-first on disk -> H x W x B

    def close(self) -> None:
        """Close the GDAL datasets."""
        super().close()
        for dataset, _ in self._parts:
            dataset.close()


def open_raster(path: Path, key: str | None, what: str) -> CubeSource:
    """A GDAL-readable cube; its values scaled by the bands' own scale / offset, or else by the
    gains and offsets of an EnMAP METADATA.XML beside it (so EnMAP L2A reads as reflectance)."""
    dataset = open_gdal(str(path), path, what)
    try:
        parts, field = _raster_parts(path, dataset, key, what)
    except BaseException:
        dataset.close()
        raise
    try:
        bands = [(part, index) for part, indexes in parts for index in indexes]
        enmap = _enmap_metadata(path, len(bands))
        meta: dict[str, Any] = dict(
            zip(
                ("wavelengths", "fwhm", "good_bands"),
                _raster_bands(path, bands, enmap),
                strict=True,
            )
        )
        meta["crs"], meta["transform"] = georeferencing(parts[0][0])
        meta["nodata"], meta["scaling"] = _raster_values(bands)
        if meta["scaling"] is None and enmap is not None:  # the GeoTIFF's own scale comes first
            meta["scaling"] = enmap.scaling
    except BaseException:
        for part, _ in parts:
            part.close()
        raise
    return RasterSource(parts, path, field, file_format=what, **meta)


def _raster_parts(
    path: Path, dataset: DatasetReader, key: str | None, what: str
) -> tuple[list[tuple[DatasetReader, list[int]]], str]:
    """The datasets and band numbers that make up the cube, and its name: the file's own
    bands, or those of the variables (GDAL subdatasets) of a NetCDF file."""
    if dataset.count > 0 and not dataset.subdatasets:
        no_key(path, key)
        return [(dataset, list(range(1, dataset.count + 1)))], "image"
    subdatasets = list(dataset.subdatasets)
    names = [sub.rsplit(":", 1)[-1].lstrip("/") for sub in subdatasets]
    chosen = _chosen_variables(path, names, key)
    dataset.close()
    parts: list[tuple[DatasetReader, list[int]]] = []
    try:
        for i in chosen:
            part = open_gdal(subdatasets[i], path, what)
            parts.append((part, list(range(1, part.count + 1))))
            first = parts[0][0]
            if (part.height, part.width) != (first.height, first.width):
                raise S3FNDataError(
                    f"{path}: variable {names[i]} is {part.height}x{part.width}; "
                    f"expected {first.height}x{first.width} like {names[chosen[0]]}"
                )
    except BaseException:
        for part, _ in parts:
            part.close()
        raise
    return parts, names[chosen[0]] if len(chosen) == 1 else "image"


def _chosen_variables(path: Path, names: list[str], key: str | None) -> list[int]:
    """Which variables hold the cube: `key`, the only one, or GDAL's one variable per band."""
    if key is not None:
        if key.lstrip("/") not in names:
            raise S3FNDataError(
                f"{path}: no variable named {key!r}; expected one of {', '.join(names) or 'none'}"
            )
        return [names.index(key.lstrip("/"))]
    if not names:
        raise S3FNDataError(f"{path}: no raster bands; expected an HxW image with B bands")
    if len(names) == 1 or all(_GDAL_BAND_VARIABLE.fullmatch(n) for n in names):
        return list(range(len(names)))
    raise S3FNDataError(
        f"{path}: {len(names)} variables ({', '.join(names)}); pass key= to choose one"
    )


def _raster_bands(
    path: Path, bands: list[tuple[DatasetReader, int]], enmap: EnmapBands | None
) -> tuple[np.ndarray | None, np.ndarray | None, np.ndarray | None]:
    """Band centres and widths (nm) and usable bands, from wherever the product keeps them.

    In order: per-band `wavelength` / `wavelength_units` / `fwhm` / `bbl` items (GDAL from an
    ENVI header, the EnMAP-Box's GeoTIFFs of EnMAP / PRISMA / EMIT products, NetCDF written by
    GDAL), GDAL's IMAGERY domain `CENTRAL_WAVELENGTH_UM` / `FWHM_UM`, then EnMAP's
    <product>-METADATA.XML beside its SPECTRAL_IMAGE GeoTIFF.
    """
    items = [dataset.tags(index) for dataset, index in bands]
    imagery = [dataset.tags(index, ns="IMAGERY") for dataset, index in bands]
    default_unit = bands[0][0].tags().get("wavelength_units")
    units = [item.get("wavelength_units", default_unit) for item in items]
    centres = _band_items(path, items, "wavelength")
    wavelengths = fwhm = None
    if centres is not None:
        wavelengths, fwhm = _to_nm(centres, _band_items(path, items, "fwhm"), units, path)
    else:
        centres_um = _band_items(path, imagery, "CENTRAL_WAVELENGTH_UM")
        if centres_um is not None:
            wavelengths = centres_um * 1000.0
        elif enmap is not None:
            wavelengths, fwhm = enmap.centres, enmap.fwhm
    if fwhm is None and wavelengths is not None:
        widths_um = _band_items(path, imagery, "FWHM_UM")
        fwhm = None if widths_um is None else widths_um * 1000.0
    bbl = _band_items(path, items, "bbl")
    return wavelengths, fwhm, None if bbl is None else bbl != 0


def _band_items(path: Path, items: list[dict[str, str]], name: str) -> np.ndarray | None:
    """The numeric item `name` of every band, None when no band has it."""
    present = [name in item for item in items]
    if not any(present):
        return None
    if not all(present):
        raise S3FNDataError(
            f"{path}: band metadata item '{name}' is on {sum(present)} of {len(items)} bands; "
            "expected one per band"
        )
    try:
        return np.array([float(item[name]) for item in items], dtype=np.float64)
    except ValueError as exc:
        raise S3FNDataError(
            f"{path}: band metadata item '{name}' is not numeric ({exc}); expected numbers"
        ) from exc


def _to_nm(
    centres: np.ndarray, widths: np.ndarray | None, units: list[str | None], path: Path
) -> tuple[np.ndarray | None, np.ndarray | None]:
    """Band centres and widths in nm, each band converted from its own unit."""
    wavelengths = np.empty_like(centres)
    fwhm = None if widths is None else np.empty_like(widths)
    for unit in dict.fromkeys(units):
        chosen = np.array([u == unit for u in units])
        converted = wavelengths_to_nm(centres[chosen], unit, str(path))
        if converted is None:  # band numbers ("Index"), not wavelengths
            return None, None
        wavelengths[chosen] = converted
        if fwhm is not None and widths is not None:
            fwhm[chosen] = fwhm_to_nm(widths[chosen], centres[chosen], unit, str(path))
    return wavelengths, fwhm


@dataclass(frozen=True, eq=False)
class EnmapBands:
    """What EnMAP's <product>-METADATA.XML says of each band: centre and FWHM (nm), and the
    gain and offset that make its stored integers radiometry (L2A: reflectance = DN * gain +
    offset), None where the file lists none."""

    centres: np.ndarray
    fwhm: np.ndarray | None
    scaling: tuple[np.ndarray, np.ndarray] | None


def _enmap_metadata(path: Path, bands: int) -> EnmapBands | None:
    """The band characterisation of EnMAP's metadata file beside its spectral image, if any."""
    match = _ENMAP_IMAGE.fullmatch(path.stem)
    if match is None:
        return None
    candidates = [path.with_name(f"{match['product']}-METADATA{ext}") for ext in (".XML", ".xml")]
    metadata = next((c for c in candidates if c.is_file()), None)
    if metadata is None:
        return None
    try:
        root = ElementTree.parse(metadata).getroot()
        centres, widths, gains, offsets = (
            [float(e.text or "") for e in root.findall(_ENMAP_BANDS + tag)]
            for tag in ("wavelengthCenterOfBand", "FWHMOfBand", "GainOfBand", "OffsetOfBand")
        )
    except (ElementTree.ParseError, ValueError) as exc:
        raise S3FNDataError(f"{metadata}: not a readable EnMAP metadata file ({exc})") from exc
    if len(centres) != bands:
        raise S3FNDataError(
            f"{metadata}: bandCharacterisation lists {len(centres)} wavelengthCenterOfBand; "
            f"expected {bands}, one per band of {path.name}"
        )
    scaling = None
    if gains or offsets:
        for tag, values in (("GainOfBand", gains), ("OffsetOfBand", offsets)):
            if len(values) != bands:
                raise S3FNDataError(
                    f"{metadata}: bandCharacterisation lists {len(values)} {tag}; "
                    f"expected {bands}, one per band of {path.name}"
                )
        scaling = (np.array(gains), np.array(offsets))
    return EnmapBands(
        np.array(centres), np.array(widths) if len(widths) == bands else None, scaling
    )


def _raster_values(
    bands: list[tuple[DatasetReader, int]],
) -> tuple[tuple[np.ndarray, np.ndarray] | None, tuple[np.ndarray, np.ndarray] | None]:
    """Per-band no-data values and GDAL scale / offset, None where no band has any."""
    nodata = [dataset.nodatavals[index - 1] for dataset, index in bands]
    gain = np.array([dataset.scales[index - 1] for dataset, index in bands], dtype=np.float64)
    offset = np.array([dataset.offsets[index - 1] for dataset, index in bands], dtype=np.float64)
    defined = np.array([v is not None for v in nodata])
    values = np.array([0.0 if v is None else v for v in nodata], dtype=np.float64)
    scaled = bool(np.any(gain != 1.0) or np.any(offset != 0.0))
    return (values, defined) if defined.any() else None, (gain, offset) if scaled else None


def open_gdal(target: str, path: Path, what: str) -> DatasetReader:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", NotGeoreferencedWarning)
            return rasterio.open(target)
    except RasterioIOError as exc:
        raise S3FNDataError(f"{path}: not a readable {what} file ({exc})") from exc


def georeferencing(dataset: DatasetReader) -> tuple[str | None, Geotransform | None]:
    """(CRS as WKT, GDAL geotransform) of a GDAL dataset, None for what it lacks."""
    crs = dataset.crs.to_wkt() if dataset.crs else None
    if crs is None and dataset.transform.is_identity:
        return None, None
    return crs, tuple(dataset.transform.to_gdal())  # type: ignore[return-value]


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
