"""Maps of many cubes, or of one large cube, written by the processes of a torchrun group.

The cubes are dealt to the processes, one whole cube each, while there are at least as many
cubes as processes; otherwise every cube's tiles are dealt instead, each process writes its
tiles into shared scratch arrays beside the output, and rank 0 alone writes the final files
from them. Either way every output is written once, by one process. Outside a group this is
one process mapping every cube.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from s3fn import process_group
from s3fn.inference.classifier import Classifier
from s3fn.inference.grid_maps import write_on_grid
from s3fn.inference.maps import tile_origins, write_tiles
from s3fn.io import LABELS, PROBABILITIES, CubeSource, open_map_writer, open_source
from s3fn.progress import Progress

SUFFIXES = {"tif": ".tif", "envi": ".hdr"}
PREVIEW_PIXELS = 25_000_000  # PNG previews of larger maps would not be legible anyway


def map_paths(out: Path, cube: str, fmt: str, probabilities: bool) -> list[Path]:
    """Where the label map (and the probabilities) of `cube` go."""
    stem = out / Path(cube).name.split(".")[0]
    suffix = SUFFIXES[fmt]
    paths = [stem.with_name(f"{stem.name}_labels{suffix}")]
    if probabilities:
        paths.append(stem.with_name(f"{stem.name}_probabilities{suffix}"))
    return paths


def map_cubes(
    classifier: Classifier,
    cubes: Sequence[str],
    out: Path,
    *,
    fmt: str,
    probabilities: bool,
    key: str | None,
    tile: int,
    progress: Progress,
    swath: bool = False,
) -> list[Path]:
    """Write every cube's map; returns the files this process wrote. A swath with a geometry
    lookup table (EMIT) is mapped onto the table's grid unless `swath`."""
    group = process_group.current()
    rank, world = (0, 1) if group is None else (group.rank, group.world_size)
    written = []
    for i, cube in enumerate(cubes):
        paths = map_paths(out, cube, fmt, probabilities)
        with open_source(cube, key=key) as source:
            if world == 1 or len(cubes) >= world:
                if i % world == rank:
                    written += _whole(classifier, source, paths, tile, progress, swath)
            else:
                written += _shared(classifier, source, paths, tile, progress, rank, world, swath)
    return written


def _whole(
    classifier: Classifier,
    source: CubeSource,
    paths: list[Path],
    tile: int,
    progress: Progress,
    swath: bool,
) -> list[Path]:
    height, width = source.shape[:2]
    bar = progress.bar(len(tile_origins(height, width, tile)), f"mapping {source.path}", "tile")
    try:
        return classifier.write_map(
            source,
            paths[0],
            probabilities_path=paths[1] if len(paths) > 1 else None,
            tile=tile,
            on_tile=lambda _: bar.update(1),
            swath=swath,
        )
    finally:
        bar.close()


class _ScratchArray:
    """A shared .npy scratch array that takes map tiles as a map writer does."""

    def __init__(self, path: Path) -> None:
        self.array = np.load(path, mmap_mode="r+")

    def write(self, row0: int, col0: int, tile: np.ndarray) -> None:
        self.array[row0 : row0 + tile.shape[0], col0 : col0 + tile.shape[1]] = tile


def _shared(
    classifier: Classifier,
    source: CubeSource,
    paths: list[Path],
    tile: int,
    progress: Progress,
    rank: int,
    world: int,
    swath: bool,
) -> list[Path]:
    """This rank's tiles into scratch arrays, then (rank 0) the final files from them."""
    height, width = source.shape[:2]
    k = len(classifier.class_names)
    scratch = [path.with_name(f".{path.name}.partial.npy") for path in paths]
    shapes = [((height, width), np.int32), ((height, width, k), np.float32)][: len(paths)]
    if rank == 0:
        for path, (shape, dtype) in zip(scratch, shapes, strict=True):
            np.lib.format.open_memmap(path, mode="w+", dtype=dtype, shape=shape).flush()
    process_group.barrier()
    try:
        _scratch_tiles(classifier, source, scratch, tile, progress, rank, world)
    except BaseException:  # a cube broken past its first tiles: no scratch left beside the maps
        for path in scratch:
            path.unlink(missing_ok=True)
        raise
    process_group.barrier()
    written = []
    kinds = (LABELS, PROBABILITIES)
    if rank == 0 and source.lookup is not None and not swath:
        stored = [np.load(partial, mmap_mode="r") for partial in scratch]
        maps = list(zip(paths, kinds, stored, strict=False))
        written = write_on_grid(source.lookup, maps, classifier.class_names)
        del stored, maps
        for partial in scratch:
            partial.unlink()
    elif rank == 0:
        for path, partial, kind in zip(paths, scratch, kinds, strict=False):
            stored = np.load(partial, mmap_mode="r")
            with open_map_writer(
                path,
                height=height,
                width=width,
                class_names=classifier.class_names,
                crs=source.crs,
                transform=source.transform,
                kind=kind,
            ) as writer:
                for row0, col0 in tile_origins(height, width, tile):
                    writer.write(
                        row0, col0, np.asarray(stored[row0 : row0 + tile, col0 : col0 + tile])
                    )
            del stored
            partial.unlink()
            written.append(path)
    process_group.barrier()
    return written


def _scratch_tiles(
    classifier: Classifier,
    source: CubeSource,
    scratch: list[Path],
    tile: int,
    progress: Progress,
    rank: int,
    world: int,
) -> None:
    """Map this rank's share of the tiles into the scratch arrays."""
    height, width = source.shape[:2]
    sinks = [_ScratchArray(path) for path in scratch]
    origins = tile_origins(height, width, tile)[rank::world]
    bar = progress.bar(len(origins), f"mapping {source.path} (rank {rank})", "tile")
    tiles = classifier.map_tiles(source, tile=tile, origins=origins)
    write_tiles(tiles, *sinks, on_tile=lambda _: bar.update(1))
    bar.close()
    for sink in sinks:
        sink.array.flush()


def preview(labels_path: Path, class_names: list[str], title: str) -> Path | None:
    """A PNG of the written label map with a legend, where the map is small enough to show."""
    from s3fn.report import label_map

    with open_source(labels_path) as source:
        height, width = source.shape[:2]
        if height * width > PREVIEW_PIXELS:
            return None
        labels = (
            source.read(slice(0, height), slice(0, width), nodata=0.0)[..., 0].astype(np.int64) - 1
        )
    return label_map(labels, class_names, labels_path.with_suffix(".png"), title)


def class_counts(labels_path: Path, k: int) -> np.ndarray:
    """Pixels per class (K,) of a written label map, read tile by tile."""
    counts = np.zeros(k + 1, dtype=np.int64)
    with open_source(labels_path) as source:
        height, width = source.shape[:2]
        for row in range(0, height, 1024):
            block = source.read(slice(row, min(height, row + 1024)), slice(0, width), nodata=0.0)
            counts += np.bincount(block[..., 0].astype(np.int64).ravel(), minlength=k + 1)
    return counts[1:]
