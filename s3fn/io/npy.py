"""NumPy files: a .npy array, memory-mapped, and the arrays of a .npz archive, loaded whole
(a compressed archive cannot be mapped)."""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np

from s3fn.data.errors import S3FNDataError
from s3fn.io.containers import ContainerArray, Entry, choose_entry


def open_npy(path: Path, key: str | None) -> ContainerArray:
    """The one array of a .npy file, memory-mapped."""
    if key is not None:
        raise S3FNDataError(f"{path}: a .npy file holds one array; key={key!r} does not apply")
    try:
        return ContainerArray(np.load(path, mmap_mode="r", allow_pickle=False), "array", None)
    except (ValueError, OSError) as exc:
        raise S3FNDataError(f"{path}: not a readable .npy file ({exc})") from exc


def open_npz(path: Path, key: str | None, ndim: int) -> ContainerArray:
    """The `ndim`-D array `key` (or the only one) of a .npz archive."""
    try:
        with np.load(path, allow_pickle=False) as archive:
            arrays = {name: archive[name] for name in archive.files}
    except (ValueError, OSError, zipfile.BadZipFile) as exc:
        raise S3FNDataError(f"{path}: not a readable .npz file ({exc})") from exc
    entries = {name: Entry(a.shape, lambda a=a: a) for name, a in arrays.items()}
    return choose_entry(path, entries, key, ndim)
