"""What the container formats (MATLAB v5 / v7.3, .npy, .npz, HDF5) share: the arrays a file
holds, and the one chosen by key or shape, with the band centres kept beside it."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np

from s3fn.data.cube import wavelengths_to_nm
from s3fn.data.errors import S3FNDataError
from s3fn.io.source import Lazy

# Names under which a container may keep the band centres next to the cube.
WAVELENGTH_NAMES = ("wavelengths", "wavelength")
_WHAT = {3: "a 3-D HxWxB cube", 2: "a 2-D HxW label map"}


class Entry:
    """One array in a container: its shape, and how to open it (lazily)."""

    def __init__(self, shape: tuple[int, ...], load: Callable[[], Lazy]) -> None:
        self.shape = shape
        self.load = load


@dataclass(eq=False)
class ContainerArray:
    """The chosen array of a container file, not read yet: `array` slices like an ndarray, and
    `handle` is the HDF5 file it lives in (None for arrays already in memory or memory-mapped)."""

    array: Lazy
    name: str
    wavelengths: np.ndarray | None
    handle: h5py.File | None = None

    def close(self) -> None:
        """Close the HDF5 file behind `array`, if any."""
        if self.handle is not None:
            self.handle.close()


def choose_entry(
    path: Path, entries: Mapping[str, Entry], key: str | None, ndim: int
) -> ContainerArray:
    """The `ndim`-D array `key` (or the only one) of `entries`, with the band centres stored
    beside a cube under one of `WAVELENGTH_NAMES`."""
    if key is not None:
        name = key.lstrip("/")
        if name not in entries:
            raise S3FNDataError(
                f"{path}: no numeric array named {key!r}; expected one of {_listing(entries)}"
            )
        entry = entries[name]
        if len(entry.shape) != ndim:
            raise S3FNDataError(
                f"{path}: array {name!r} is {len(entry.shape)}-D {entry.shape}; "
                f"expected {_WHAT[ndim]}"
            )
    else:
        fits = [n for n, e in entries.items() if len(e.shape) == ndim and n not in WAVELENGTH_NAMES]
        if len(fits) > 1:
            raise S3FNDataError(
                f"{path}: {len(fits)} {ndim}-D arrays ({', '.join(fits)}); pass key= to choose one"
            )
        if not fits:
            raise S3FNDataError(
                f"{path}: no {ndim}-D array; expected {_WHAT[ndim]}, found {_listing(entries)}"
            )
        name = fits[0]
        entry = entries[name]
    wavelengths = None
    if ndim == 3:
        bands = entry.shape[2]
        for candidate in WAVELENGTH_NAMES:
            if candidate in entries and entries[candidate].shape in {
                (bands,),
                (1, bands),
                (bands, 1),
            }:
                values = np.asarray(entries[candidate].load(), dtype=np.float64).ravel()
                wavelengths = wavelengths_to_nm(values, None, f"{path}: {candidate}")
                break
    return ContainerArray(entry.load(), name, wavelengths)


def _listing(entries: Mapping[str, Entry]) -> str:
    if not entries:
        return "no numeric arrays"
    return ", ".join(f"{name} {entry.shape}" for name, entry in entries.items())
