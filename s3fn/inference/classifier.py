"""`Classifier`: a trained model with its preprocessing and window settings, ready for cubes.

It is the face of the inference package: object images (`objects`), chosen pixels and scene
maps (`pixels`), and the bundle on disk (`bundle`). It imports nothing from `s3fn.train`;
training builds one with `s3fn.train.train_classifier`.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import ExitStack
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

from s3fn.data.cube import Cube, as_cube_array
from s3fn.data.datasets import ObjectDataset, SceneDataset
from s3fn.data.nodata import nodata_pixels
from s3fn.data.preprocess import Preprocessor
from s3fn.evaluate.metrics import Report
from s3fn.evaluate.predict import Evaluation
from s3fn.evaluate.voting import VOTINGS, vote, vote_one
from s3fn.inference.bands import band_map
from s3fn.inference.bundle import load_bundle, save_bundle
from s3fn.inference.grid_maps import ArraySink, write_on_grid
from s3fn.inference.maps import DEFAULT_TILE, MapTile, map_tiles, write_tiles
from s3fn.inference.objects import ImagePrediction, object_mask, window_probabilities
from s3fn.inference.pixels import classify_centres
from s3fn.io import LABELS, PROBABILITIES, CubeSource, from_array, open_map_writer
from s3fn.models.inputs import as_window

if TYPE_CHECKING:
    import xarray as xr

KINDS = ("object", "scene")


class Classifier:
    """A model ready for whole cubes: preprocessing, windows, batched forward, voting.

    `window` is the (h, w) the model was trained on; `predict_image` votes (`voting`:
    "majority" or "mean-prob") over `n_windows` windows drawn (deterministically, by `seed`)
    inside the object mask, which is "band sum > `mask_threshold`" unless given;
    `predict_map` classifies every pixel from the window centred on it (reflect-padded at the
    borders). `kind` says whether it was trained on object-level or scene-level data.
    `band_tolerance` (nm, settable) is how far a trained band may lie outside a cube's range
    and still be filled from the nearest covered band (None: 20 nm or two band widths).
    """

    def __init__(
        self,
        model: nn.Module,
        preprocessor: Preprocessor,
        class_names: Sequence[str],
        *,
        window: int | tuple[int, int],
        voting: str = "majority",
        n_windows: int = 20,
        mask_threshold: float = 0.0,
        seed: int = 0,
        kind: str = "object",
        batch_size: int = 256,
        info: Mapping[str, Any] | None = None,
        band_tolerance: float | None = None,
    ) -> None:
        self.model = model.eval()
        self.preprocessor = preprocessor
        self.class_names = list(class_names)
        self.window = as_window(window)
        self.voting = voting
        self.n_windows = int(n_windows)
        self.mask_threshold = float(mask_threshold)
        self.seed = int(seed)
        self.kind = kind
        self.batch_size = int(batch_size)
        self.info = dict(info or {})
        self.band_tolerance = band_tolerance
        n_outputs = getattr(model, "n_classes", len(self.class_names))
        if n_outputs != len(self.class_names):
            raise ValueError(
                f"Classifier: the model has {n_outputs} classes but {len(self.class_names)} "
                "class names were given"
            )
        net = getattr(model, "backbone", model)
        in_bands = getattr(net, "in_bands", preprocessor.n_components)
        if in_bands != preprocessor.n_components:
            raise ValueError(
                f"Classifier: the model takes {in_bands} bands but the preprocessor gives "
                f"{preprocessor.n_components} components"
            )
        if getattr(net, "window", None) not in (None, self.window):
            raise ValueError(
                f"Classifier: the model takes {net.window} windows; window={self.window} given"
            )
        if voting not in VOTINGS:
            raise ValueError(f"Classifier: voting={voting!r}; expected one of {', '.join(VOTINGS)}")
        if kind not in KINDS:
            raise ValueError(f"Classifier: kind={kind!r}; expected 'object' or 'scene'")
        if self.n_windows < 1 or self.batch_size < 1:
            raise ValueError("Classifier: n_windows and batch_size must be >= 1")

    @property
    def device(self) -> torch.device:
        """Where the model runs."""
        return next(self.model.parameters()).device

    @property
    def n_bands(self) -> int:
        """Bands of the raw cubes this classifier takes."""
        return self.preprocessor.n_bands

    def to(self, device: str | torch.device) -> Classifier:
        """Move the model to `device`; returns self."""
        self.model.to(device)
        return self

    def predict_image(
        self, cube: Cube | np.ndarray, mask: np.ndarray | None = None
    ) -> ImagePrediction:
        """Classify one object image (H x W x B, raw reflectance in the original bands)."""
        data = self._check_cube(cube, "predict_image")
        probabilities, origins = self._window_probabilities(data, mask, "predict_image")
        index, mean, votes = vote_one(probabilities, self.voting)
        return ImagePrediction(self.class_names[index], index, mean, votes, origins)

    def predict_pixels(
        self, cube: Cube | np.ndarray, pixels: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """Class index (P,) and probabilities (P x K) of the windows centred on `pixels` (P x 2);
        -1 and NaN at no-data pixels."""
        data = self._check_cube(cube, "predict_pixels")
        pixels = np.asarray(pixels, dtype=np.int64).reshape(-1, 2)
        return self._classify_centres(data, pixels, "predict_pixels")

    def predict_map(
        self,
        cube: Cube | np.ndarray | CubeSource,
        mask: np.ndarray | None = None,
        *,
        return_probabilities: bool = False,
        tile: int = DEFAULT_TILE,
    ) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
        """H x W map of class indices, -1 outside `mask` (default: every pixel) and at no-data
        pixels (any band NaN or the file's no-data value); with `return_probabilities`, also
        the H x W x K probabilities (0 outside the mask, NaN at no data).

        Each pixel gets the label of the window centred on it (reflect-padded at the borders);
        the network runs densely over `tile` x `tile` tiles. A `CubeSource` is read lazily, but
        the map itself is returned in memory, on the cube's own grid (an EMIT swath's, not its
        lookup table's): `write_map` writes a larger one tile by tile.
        """
        source = self._source(cube)
        height, width = source.shape[:2]
        label_map = np.full((height, width), -1, dtype=np.int64)
        prob_map = np.zeros((height, width, len(self.class_names)), dtype=np.float32)
        for part in self.map_tiles(source, mask, tile=tile):
            rows, cols = part.labels.shape
            window = (slice(part.row0, part.row0 + rows), slice(part.col0, part.col0 + cols))
            label_map[window] = part.labels
            prob_map[window] = part.probabilities
        return (label_map, prob_map) if return_probabilities else label_map

    def predict_xarray(
        self,
        da: xr.DataArray,
        *,
        probabilities: bool = False,
        band_tolerance: float | None = None,
    ) -> xr.DataArray:
        """The map of `da`, a `(band, y, x)` DataArray (dims in any order), as `predict_map` gives:
        a `(y, x)` int64 label DataArray (-1 at no data), or with `probabilities` a
        `(class, y, x)` float32 one (NaN at no data) with the class names as `class` coordinate.

        Either keeps the scene's `y` / `x` coordinates, those on neither band (rioxarray's
        `spatial_ref`: CRS and transform), its CRS where rioxarray is installed, and has the class
        names in `attrs["class_names"]`. A `wavelength` coordinate on `band` (nm, or the unit
        in its `units` attribute; `fwhm` beside it) matches the bands to the trained ones as a
        file's wavelengths do (`band_tolerance`: this call's, default `self.band_tolerance`);
        without one the band count must be the trained one. A DataArray still in stored values
        (`_FillValue`, `scale_factor` / `add_offset`, as `rioxarray.open_rasterio` leaves it)
        is masked and scaled as its file would be.

        On Dask the map is lazy, one task per chunk on y and x (the band axis is rechunked into
        one chunk, and chunks thinner than half a window merged with a neighbour); each task
        reads its chunk with a halo of half a window and reflects the scene at its border, so
        every pixel equals `predict_map`'s. The model travels to worker processes once, pickled
        on the device it is on. Without Dask the map is computed now.
        """
        from s3fn.inference.xarray_maps import predict_xarray

        return predict_xarray(self, da, probabilities=probabilities, band_tolerance=band_tolerance)

    def map_tiles(
        self,
        source: CubeSource,
        mask: np.ndarray | None = None,
        *,
        tile: int = DEFAULT_TILE,
        origins: Iterable[tuple[int, int]] | None = None,
    ) -> Iterator[MapTile]:
        """The map of `source` tile by tile (see `s3fn.inference.maps.map_tiles`)."""
        where = f"predict_map: {source.path or 'cube'}"
        to_bands = band_map(
            self.preprocessor,
            source.shape[2],
            source.wavelengths,
            source.fwhm,
            where,
            band_tolerance=self.band_tolerance,
        )
        return map_tiles(
            self.model,
            self.preprocessor,
            to_bands,
            source,
            self.window,
            mask=mask,
            tile=tile,
            origins=origins,
            batch_size=self.batch_size,
            where=where,
        )

    def write_map(
        self,
        cube: Cube | np.ndarray | CubeSource,
        labels_path: str | os.PathLike,
        *,
        probabilities_path: str | os.PathLike | None = None,
        mask: np.ndarray | None = None,
        tile: int = DEFAULT_TILE,
        on_tile: Callable[[MapTile], None] | None = None,
        swath: bool = False,
    ) -> list[Path]:
        """Write the label map (GeoTIFF .tif or ENVI .hdr, by suffix; georeferenced like the
        cube where it is) and optionally the probabilities, tile by tile; returns the files.

        A swath with a geometry lookup table (EMIT) is classified on the swath and its map
        written on the table's georeferenced grid (no class where the grid shows no swath
        pixel); `swath=True` writes the swath map itself, not georeferenced.
        `on_tile` is called after each tile is classified (e.g. to advance a progress bar).
        """
        source = self._source(cube)
        height, width = source.shape[:2]
        tiles = self.map_tiles(source, mask, tile=tile)
        if source.lookup is not None and not swath:
            maps = [(Path(labels_path), LABELS, np.full((height, width), -1, np.int64))]
            if probabilities_path is not None:
                k = len(self.class_names)
                probabilities = np.zeros((height, width, k), np.float32)
                maps.append((Path(probabilities_path), PROBABILITIES, probabilities))
            write_tiles(tiles, *(ArraySink(array) for _, _, array in maps), on_tile=on_tile)
            return write_on_grid(source.lookup, maps, self.class_names)
        common = {
            "height": height,
            "width": width,
            "class_names": self.class_names,
            "crs": source.crs,
            "transform": source.transform,
        }
        with ExitStack() as stack:
            writers = [stack.enter_context(open_map_writer(labels_path, kind=LABELS, **common))]
            if probabilities_path is not None:
                writers.append(
                    stack.enter_context(
                        open_map_writer(probabilities_path, kind=PROBABILITIES, **common)
                    )
                )
            write_tiles(tiles, *writers, on_tile=on_tile)
        return [writer.path for writer in writers]

    def evaluate(
        self, data: ObjectDataset | SceneDataset, part: Sequence[int] | np.ndarray | None = None
    ) -> Evaluation:
        """Score on the images `part` of an object dataset (window- and image-level), or on the
        pixels `part` (P x 2) of a scene (per pixel; no-data pixels are not scored); default:
        everything."""
        if isinstance(data, SceneDataset):
            pixels = np.argwhere(data.labels > 0) if part is None else np.asarray(part)
            pixels = pixels[~nodata_pixels(data.cube.data[pixels[:, 0], pixels[:, 1]])]
            labels, probabilities = self.predict_pixels(data.cube, pixels)
            truth = data.labels[pixels[:, 0], pixels[:, 1]] - 1
            report = Report.from_labels(truth, labels, self.class_names)
            return Evaluation(report, None, probabilities, truth, None)
        indices = range(len(data)) if part is None else [int(i) for i in part]
        probabilities, truth, groups = [], [], []
        for i in indices:
            sample = data[i]
            where = f"Classifier.evaluate: image {sample.image_id}"
            window_probs, _ = self._window_probabilities(
                self._check_cube(sample.cube, where), sample.mask, where
            )
            probabilities.append(window_probs)
            truth.append(np.full(len(window_probs), sample.label))
            groups.append(np.full(len(window_probs), i))
        if not probabilities:
            raise ValueError("Classifier.evaluate: no images to evaluate")
        probs, labels, ids = map(np.concatenate, (probabilities, truth, groups))
        votes = vote(probs, ids, self.voting)
        image_truth = np.array([data.labels[i] for i in votes.groups])
        windows = Report.from_labels(labels, probs.argmax(axis=1), self.class_names)
        images = Report.from_labels(image_truth, votes.labels, self.class_names)
        return Evaluation(windows, images, probs, labels, votes)

    def save(self, folder: str | os.PathLike) -> Path:
        """Write the bundle (`model.safetensors`, then `classifier.json`) into `folder`."""
        settings = {
            "kind": self.kind,
            "class_names": self.class_names,
            "window": list(self.window),
            "voting": self.voting,
            "n_windows": self.n_windows,
            "mask_threshold": self.mask_threshold,
            "seed": self.seed,
        }
        return save_bundle(folder, self.model, self.preprocessor, settings, self.info)

    @classmethod
    def load(
        cls,
        folder: str | os.PathLike,
        *,
        device: str | torch.device = "cpu",
        use_fused_ops: bool = True,
    ) -> Classifier:
        """Read a bundle written by `save` onto `device`."""
        model, preprocessor, settings = load_bundle(folder, use_fused_ops=use_fused_ops)
        return cls(
            model.to(device),
            preprocessor,
            settings["class_names"],
            window=tuple(settings["window"]),
            voting=settings["voting"],
            n_windows=settings["n_windows"],
            mask_threshold=settings["mask_threshold"],
            seed=settings["seed"],
            kind=settings["kind"],
            info=settings["info"],
        )

    def _check_cube(self, cube: Cube | np.ndarray, where: str) -> np.ndarray:
        """The cube as checked float32 in the trained bands (resampled where it has others)."""
        raw = cube.data if isinstance(cube, Cube) else cube
        data = as_cube_array(np.asarray(raw), where, "cube")
        to_bands = band_map(
            self.preprocessor,
            data.shape[2],
            cube.wavelengths if isinstance(cube, Cube) else None,
            getattr(cube, "fwhm", None),
            where,
            band_tolerance=self.band_tolerance,
        )
        return to_bands(data)

    def _source(self, cube: Cube | np.ndarray | CubeSource) -> CubeSource:
        if isinstance(cube, CubeSource):
            return cube
        if isinstance(cube, Cube):
            return from_array(cube)
        return from_array(as_cube_array(np.asarray(cube), "predict_map", "cube"))

    def _window_probabilities(
        self, data: np.ndarray, mask: np.ndarray | None, where: str
    ) -> tuple[np.ndarray, np.ndarray]:
        return window_probabilities(
            self.model,
            self.preprocessor,
            data,
            object_mask(data, mask, self.mask_threshold, where),
            n_windows=self.n_windows,
            window=self.window,
            seed=self.seed,
            batch_size=self.batch_size,
            device=self.device,
            where=where,
        )

    def _classify_centres(
        self, data: np.ndarray, pixels: np.ndarray, where: str
    ) -> tuple[np.ndarray, np.ndarray]:
        return classify_centres(
            self.model,
            self.preprocessor,
            data,
            pixels,
            window=self.window,
            batch_size=self.batch_size,
            device=self.device,
            where=where,
        )
