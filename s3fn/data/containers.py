"""Arrays inside container files (MATLAB v5 / v7.3, .npy, .npz, HDF5), chosen by key or shape."""

from __future__ import annotations

import zipfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np
import scipy.io
from scipy.io.matlab import MatReadError, matfile_version

from s3fn.data.cube import wavelengths_to_nm
from s3fn.data.errors import S3FNDataError

# Names under which a container may keep the band centres next to the cube.
WAVELENGTH_NAMES = ("wavelengths", "wavelength")
_WHAT = {3: "a 3-D HxWxB cube", 2: "a 2-D HxW label map"}


class HDF5View:
    """An HDF5 dataset seen as the array it holds, read only where sliced; `transpose` reverses
    its axes (MATLAB v7.3 stores arrays column-major)."""

    def __init__(self, dataset: h5py.Dataset, transpose: bool) -> None:
        self.dataset = dataset
        self.transpose = transpose
        self.shape: tuple[int, ...] = dataset.shape[::-1] if transpose else dataset.shape
        self.dtype = dataset.dtype
        self.ndim = len(self.shape)

    def __getitem__(self, index: tuple[slice, ...]) -> np.ndarray:
        if self.transpose:
            return self.dataset[tuple(index)[::-1]].T
        return self.dataset[index]

    def __array__(self, dtype: np.dtype | None = None, copy: bool | None = None) -> np.ndarray:
        return np.asarray(self[()], dtype=dtype)


Lazy = np.ndarray | HDF5View


class _Entry:
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


def read_container(
    path: Path, key: str | None, ndim: int
) -> tuple[np.ndarray, str, np.ndarray | None]:
    """Read the `ndim`-D array `key` (or the only one): (array, its name, wavelengths or None)."""
    container = open_container(path, key, ndim)
    try:
        return np.asarray(container.array), container.name, container.wavelengths
    finally:
        container.close()


def open_container(path: Path, key: str | None, ndim: int) -> ContainerArray:
    """Open the `ndim`-D array `key` (or the only one) of a .npy / .npz / .mat / HDF5 file.

    .npy is memory-mapped and HDF5 (MATLAB v7.3 too) read by slices; .npz and MATLAB v5,
    which cannot be mapped, are loaded whole.
    """
    suffix = path.suffix.lower()
    if suffix == ".npy":
        if key is not None:
            raise S3FNDataError(f"{path}: a .npy file holds one array; key={key!r} does not apply")
        try:
            return ContainerArray(np.load(path, mmap_mode="r", allow_pickle=False), "array", None)
        except (ValueError, OSError) as exc:
            raise S3FNDataError(f"{path}: not a readable .npy file ({exc})") from exc
    if suffix == ".npz":
        try:
            with np.load(path, allow_pickle=False) as archive:
                arrays = {name: archive[name] for name in archive.files}
        except (ValueError, OSError, zipfile.BadZipFile) as exc:
            raise S3FNDataError(f"{path}: not a readable .npz file ({exc})") from exc
        entries = {name: _Entry(a.shape, lambda a=a: a) for name, a in arrays.items()}
        return _choose(path, entries, key, ndim)
    if suffix == ".mat":
        try:
            major, _ = matfile_version(str(path))
        except (MatReadError, ValueError) as exc:
            raise S3FNDataError(f"{path}: not a MATLAB .mat file ({exc})") from exc
        if major != 2:
            return _choose(path, _mat5_entries(path), key, ndim)
    handle = _open_hdf5(path)
    try:
        # MATLAB v7.3 is HDF5, with arrays stored column-major (axes reversed)
        container = _choose(path, _hdf5_entries(handle, transpose=suffix == ".mat"), key, ndim)
        if suffix != ".mat" and container.wavelengths is None and ndim == 3:
            dataset = handle[container.name]
            container.wavelengths = _attribute_wavelengths(path, dataset, dataset.shape[2])
    except BaseException:
        handle.close()
        raise
    container.handle = handle
    return container


def _mat5_entries(path: Path) -> dict[str, _Entry]:
    return {
        name: _Entry(
            shape, lambda name=name: scipy.io.loadmat(str(path), variable_names=[name])[name]
        )
        for name, shape, matlab_class in scipy.io.whosmat(str(path))
        if matlab_class not in {"cell", "struct", "char", "object", "function", "sparse"}
    }


def _open_hdf5(path: Path) -> h5py.File:
    try:
        return h5py.File(path, "r")
    except OSError as exc:
        raise S3FNDataError(f"{path}: not a readable HDF5 file ({exc})") from exc


def _hdf5_entries(handle: h5py.File, transpose: bool) -> dict[str, _Entry]:
    entries: dict[str, _Entry] = {}

    def visit(name: str, node: object) -> None:
        if name.startswith("#refs#") or not isinstance(node, h5py.Dataset):
            return
        if node.dtype.kind not in "biuf" or node.attrs.get("MATLAB_class") in (b"char", "char"):
            return
        shape = node.shape[::-1] if transpose else node.shape
        entries[name] = _Entry(shape, lambda node=node: HDF5View(node, transpose))

    handle.visititems(visit)
    return entries


def _choose(
    path: Path, entries: Mapping[str, _Entry], key: str | None, ndim: int
) -> ContainerArray:
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


def _attribute_wavelengths(path: Path, dataset: h5py.Dataset, bands: int) -> np.ndarray | None:
    values = dataset.attrs.get("wavelengths")
    if values is None:
        return None
    values = np.asarray(values, dtype=np.float64).ravel()
    if values.shape != (bands,):
        raise S3FNDataError(
            f"{path}: attribute 'wavelengths' of {dataset.name} has {values.size} values; "
            f"expected {bands}, one per band"
        )
    unit = dataset.attrs.get("wavelength_units")
    if isinstance(unit, bytes):
        unit = unit.decode()
    return wavelengths_to_nm(values, unit, f"{path}: {dataset.name}")


def _listing(entries: Mapping[str, _Entry]) -> str:
    if not entries:
        return "no numeric arrays"
    return ", ".join(f"{name} {entry.shape}" for name, entry in entries.items())
