"""HDF5 files (.h5 / .hdf5 / .he5 / .hdf, and MATLAB v7.3, which is HDF5): the chosen dataset
read by slices, with band centres from a `wavelengths` dataset or attribute."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np

from s3fn.data.cube import wavelengths_to_nm
from s3fn.data.errors import S3FNDataError
from s3fn.io.containers import ContainerArray, Entry, choose_entry
from s3fn.io.source import HDF5View


def open_hdf5(path: Path, key: str | None, ndim: int, *, matlab: bool = False) -> ContainerArray:
    """The `ndim`-D dataset `key` (or the only one) of an HDF5 file, not read yet; `matlab` for
    a MATLAB v7.3 file. The container holds the open file, closed with it."""
    handle = _open_hdf5(path)
    try:
        # MATLAB v7.3 is HDF5, with arrays stored column-major (axes reversed)
        container = choose_entry(path, _hdf5_entries(handle, transpose=matlab), key, ndim)
        if not matlab and container.wavelengths is None and ndim == 3:
            dataset = handle[container.name]
            container.wavelengths = _attribute_wavelengths(path, dataset, dataset.shape[2])
    except BaseException:
        handle.close()
        raise
    container.handle = handle
    return container


def _open_hdf5(path: Path) -> h5py.File:
    try:
        return h5py.File(path, "r")
    except OSError as exc:
        raise S3FNDataError(f"{path}: not a readable HDF5 file ({exc})") from exc


def _hdf5_entries(handle: h5py.File, transpose: bool) -> dict[str, Entry]:
    entries: dict[str, Entry] = {}

    def visit(name: str, node: object) -> None:
        if name.startswith("#refs#") or not isinstance(node, h5py.Dataset):
            return
        if node.dtype.kind not in "biuf" or node.attrs.get("MATLAB_class") in (b"char", "char"):
            return
        shape = node.shape[::-1] if transpose else node.shape
        entries[name] = Entry(shape, lambda node=node: HDF5View(node, transpose))

    handle.visititems(visit)
    return entries


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
