"""Maps of xarray scenes: a `(band, y, x)` DataArray in, a label or probability DataArray out on
the same grid, lazily where the scene is on Dask.

Python Earth-observation stacks (rioxarray's `open_rasterio`, odc-stac, stackstac) hold a scene
as a `(band, y, x)` DataArray with coordinates, a CRS and a no-data value, often on Dask.
`predict_xarray` takes that shape as it is, so a notebook maps a scene without converting it.

On Dask every chunk is one task. It gets its chunk and a halo of half a window on y and x from
its neighbours (`dask.array.overlap.overlap` with no boundary). At the scene's border it
reflects the scene itself, from the pixels it holds, as `numpy.pad(mode="reflect")` does and as
`Classifier.predict_map` does. Dask's own "reflect" boundary repeats the edge pixel (numpy's
"symmetric") and would give border pixels other windows. The classifier goes into the graph once,
as a key that every chunk's task depends on, so a `dask.distributed` cluster sends it to each
worker once.

xarray and Dask are imported only here, when a map is asked for: `import s3fn` needs neither.
"""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING, Any

import numpy as np
from torch import nn

from s3fn.data.cube import fwhm_to_nm, wavelengths_to_nm
from s3fn.data.errors import S3FNDataError
from s3fn.data.preprocess import Preprocessor
from s3fn.inference.bands import BandMap, band_map
from s3fn.inference.maps import DEFAULT_TILE, map_tile, tile_origins
from s3fn.inference.pixels import check_reflect_size
from s3fn.io import CubeSource

if TYPE_CHECKING:
    import dask.array
    import xarray as xr

    from s3fn.inference.classifier import Classifier

DIMS = ("band", "y", "x")
WHERE = "predict_xarray"


def predict_xarray(
    classifier: Classifier,
    scene: xr.DataArray,
    *,
    probabilities: bool = False,
    band_tolerance: float | None = None,
) -> xr.DataArray:
    """The map of `scene` as `classifier.predict_map` gives it, as a DataArray on its grid.

    See `Classifier.predict_xarray`, which calls this.
    """
    import xarray as xr

    if not isinstance(scene, xr.DataArray):
        raise TypeError(f"{WHERE}: got {type(scene).__name__}; expected an xarray.DataArray")
    if sorted(map(str, scene.dims)) != sorted(DIMS):
        raise S3FNDataError(
            f"{WHERE}: DataArray has dims {tuple(map(str, scene.dims))}; expected 'band', 'y' "
            "and 'x' (in any order)"
        )
    scene = scene.transpose(*DIMS)
    n_bands, height, width = scene.shape
    wavelengths, fwhm = _band_centres(scene)
    to_bands = band_map(
        classifier.preprocessor,
        n_bands,
        wavelengths,
        fwhm,
        WHERE,
        band_tolerance=classifier.band_tolerance if band_tolerance is None else band_tolerance,
    )
    check_reflect_size(height, width, classifier.window, WHERE)
    nodata, scaling = _stored_values(scene.attrs, n_bands)
    mapper = ChunkMapper(
        classifier.model,
        classifier.preprocessor,
        to_bands,
        classifier.window,
        (height, width, n_bands),
        n_classes=len(classifier.class_names),
        probabilities=probabilities,
        batch_size=classifier.batch_size,
        nodata=nodata,
        scaling=scaling,
    )
    if scene.chunks is None:
        data = mapper(np.asarray(scene.data), (0, 0), (0, height, 0, width))
    else:
        data = _lazy_map(mapper, scene.data)
    return _as_map(data, scene, classifier.class_names, probabilities)


class ChunkMapper:
    """What a chunk's task needs to map its pixels: the model, the preprocessing, the band map
    (built once, where the warnings about filled bands were given), the window, the scene's
    shape and how the DataArray stores its values. It pickles, for worker processes."""

    def __init__(
        self,
        model: nn.Module,
        preprocessor: Preprocessor,
        to_bands: BandMap,
        window: tuple[int, int],
        shape: tuple[int, int, int],
        *,
        n_classes: int,
        probabilities: bool,
        batch_size: int,
        nodata: tuple[np.ndarray, np.ndarray] | None,
        scaling: tuple[np.ndarray, np.ndarray] | None,
    ) -> None:
        self.model = model
        self.preprocessor = preprocessor
        self.to_bands = to_bands
        self.window = window
        self.shape = shape
        self.n_classes = n_classes
        self.probabilities = probabilities
        self.batch_size = batch_size
        self.nodata = nodata
        self.scaling = scaling

    @property
    def halo(self) -> tuple[int, int]:
        """Pixels a chunk needs beyond each side, on y and x: half a window (the larger half of
        an even window, whose halo is one pixel shorter after the chunk than before it)."""
        return self.window[0] // 2, self.window[1] // 2

    def __call__(
        self, block: np.ndarray, origin: tuple[int, int], region: tuple[int, int, int, int]
    ) -> np.ndarray:
        """The map of the scene's rows r0:r1 and columns c0:c1 (`region`), from `block`
        (B x h x w stored values whose top-left pixel is the scene's `origin`), which holds them
        and their halo wherever it lies inside the scene.

        Labels (rows x cols, int64, -1 at no data) or probabilities (K x rows x cols, float32,
        NaN at no data). The region is mapped in `DEFAULT_TILE` tiles from its corner, as
        `predict_map` maps a scene, to bound the memory a task takes.
        """
        r0, r1, c0, c1 = region
        source = _BlockSource(block, origin, self.shape, self.nodata, self.scaling)
        if self.probabilities:
            out = np.empty((self.n_classes, r1 - r0, c1 - c0), np.float32)
        else:
            out = np.empty((r1 - r0, c1 - c0), np.int64)
        for row, col in tile_origins(r1 - r0, c1 - c0, DEFAULT_TILE):
            rows, cols = min(DEFAULT_TILE, r1 - r0 - row), min(DEFAULT_TILE, c1 - c0 - col)
            part = map_tile(
                self.model,
                self.preprocessor,
                self.to_bands,
                source,
                self.window,
                (r0 + row, c0 + col, rows, cols),
                batch_size=self.batch_size,
            )
            if self.probabilities:
                out[:, row : row + rows, col : col + cols] = np.moveaxis(part.probabilities, 2, 0)
            else:
                out[row : row + rows, col : col + cols] = part.labels
        return out


class _BlockSource(CubeSource):
    """The whole scene as `map_tile` reads it, backed by one B x h x w block of it (the chunk
    and its halo) whose top-left pixel is the scene's `origin`; reads stay inside the block."""

    def __init__(
        self,
        block: np.ndarray,
        origin: tuple[int, int],
        shape: tuple[int, int, int],
        nodata: tuple[np.ndarray, np.ndarray] | None,
        scaling: tuple[np.ndarray, np.ndarray] | None,
    ) -> None:
        super().__init__(None, shape, "DataArray", nodata=nodata, scaling=scaling)
        self._block = block
        self._origin = origin

    def _read(self, r0: int, r1: int, c0: int, c1: int) -> np.ndarray:
        top, left = self._origin
        return np.moveaxis(self._block[:, r0 - top : r1 - top, c0 - left : c1 - left], 0, 2)


def _lazy_map(mapper: ChunkMapper, data: dask.array.Array) -> dask.array.Array:
    """One task per chunk of `data` (B x H x W on Dask): the band axis in one chunk, and chunks
    thinner than the halo merged into their neighbours, so that one neighbour gives a halo."""
    import dask
    from dask.array.overlap import ensure_minimum_chunksize, overlap

    halo_y, halo_x = mapper.halo
    data = data.rechunk({0: -1})
    data = data.rechunk(
        {
            1: ensure_minimum_chunksize(halo_y, data.chunks[1]),
            2: ensure_minimum_chunksize(halo_x, data.chunks[2]),
        }
    )
    haloed = overlap(data, depth={0: 0, 1: halo_y, 2: halo_x}, boundary="none")
    shared = dask.delayed(mapper, name=f"s3fn-classifier-{uuid.uuid4().hex}", traverse=False)
    if mapper.probabilities:
        chunks = ((mapper.n_classes,), *data.chunks[1:])
        return haloed.map_blocks(
            _map_chunk, shared, chunks=chunks, meta=np.empty((0, 0, 0), np.float32), token=WHERE
        )
    return haloed.map_blocks(
        _map_chunk,
        shared,
        drop_axis=0,
        chunks=data.chunks[1:],
        meta=np.empty((0, 0), np.int64),
        token=WHERE,
    )


def _map_chunk(
    block: np.ndarray, mapper: ChunkMapper, block_info: dict[Any, Any] | None = None
) -> np.ndarray:
    """A task: map the output chunk at Dask's `block_info` location from its haloed `block`,
    which starts half a window before the chunk, or at the scene's first row or column."""
    (r0, r1), (c0, c1) = block_info[None]["array-location"][-2:]
    halo_y, halo_x = mapper.halo
    return mapper(block, (max(r0 - halo_y, 0), max(c0 - halo_x, 0)), (r0, r1, c0, c1))


def _band_centres(scene: xr.DataArray) -> tuple[np.ndarray | None, np.ndarray | None]:
    """Band centres and widths in nm from the `wavelength` and `fwhm` coordinates on `band`
    (unit from their `units` attribute, as a file's header gives it), or None."""
    if "wavelength" not in scene.coords:
        return None, None
    centres = _band_coordinate(scene, "wavelength")
    unit = scene.coords["wavelength"].attrs.get("units")
    wavelengths = wavelengths_to_nm(centres, unit, f"{WHERE}: coordinate 'wavelength'")
    if wavelengths is None or "fwhm" not in scene.coords:
        return wavelengths, None
    widths = _band_coordinate(scene, "fwhm")
    unit = scene.coords["fwhm"].attrs.get("units", unit)
    return wavelengths, fwhm_to_nm(widths, centres, unit, f"{WHERE}: coordinate 'fwhm'")


def _band_coordinate(scene: xr.DataArray, name: str) -> np.ndarray:
    coordinate = scene.coords[name]
    if coordinate.dims != ("band",):
        raise S3FNDataError(
            f"{WHERE}: coordinate {name!r} has dims {tuple(map(str, coordinate.dims))}; "
            "expected ('band',), one value per band"
        )
    return np.asarray(coordinate.values, dtype=np.float64)


def _stored_values(
    attrs: dict[Any, Any], n_bands: int
) -> tuple[tuple[np.ndarray, np.ndarray] | None, tuple[np.ndarray, np.ndarray] | None]:
    """No data and scaling of a DataArray that still holds its stored values: the CF
    attributes `_FillValue`, `scale_factor` / `add_offset` and rioxarray's per-band `scales` /
    `offsets`, which `open_rasterio` leaves without `mask_and_scale`. Applied as a file's own
    no-data value and scaling are, so the map equals that of the file."""
    fill = attrs.get("_FillValue")
    nodata = None
    if fill is not None and not np.isnan(fill):
        nodata = np.full(n_bands, float(fill)), np.ones(n_bands, bool)
    gain = _per_band(attrs, ("scale_factor", "scales"), 1.0, n_bands)
    offset = _per_band(attrs, ("add_offset", "offsets"), 0.0, n_bands)
    scaled = bool(np.any(gain != 1.0) or np.any(offset != 0.0))
    return nodata, (gain, offset) if scaled else None


def _per_band(attrs: dict[Any, Any], names: tuple[str, str], default: float, n: int) -> np.ndarray:
    for name in names:
        if name in attrs:
            values = np.asarray(attrs[name], dtype=np.float64).ravel()
            if values.size not in (1, n):
                raise S3FNDataError(
                    f"{WHERE}: attribute {name!r} has {values.size} values; expected 1 or {n}, "
                    "one per band"
                )
            return np.broadcast_to(values, (n,))
    return np.full(n, default)


def _as_map(
    data: Any, scene: xr.DataArray, class_names: list[str], probabilities: bool
) -> xr.DataArray:
    """The map on the scene's grid: its y / x coordinates and those on neither band nor class
    (such as rioxarray's `spatial_ref`), its CRS, and the class names in `attrs`."""
    import xarray as xr

    coords = {
        name: coordinate
        for name, coordinate in scene.coords.items()
        if set(coordinate.dims) <= {"y", "x"}
    }
    attrs: dict[str, Any] = {"class_names": list(class_names)}
    if probabilities:
        dims, name = ("class", "y", "x"), "probabilities"
        coords["class"] = list(class_names)
    else:
        dims, name = ("y", "x"), "labels"
        attrs["_FillValue"] = -1
    result = xr.DataArray(data, dims=dims, coords=coords, attrs=attrs, name=name)
    try:
        import rioxarray  # noqa: F401  (registers the `rio` accessor)
    except ImportError:
        return result
    crs = scene.rio.crs
    if crs is None:
        return result
    return result.rio.write_crs(crs, grid_mapping_name=scene.rio.grid_mapping)
