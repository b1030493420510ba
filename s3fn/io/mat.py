"""MATLAB .mat files: v5 arrays loaded whole by scipy, v7.3 (HDF5) read by slices."""

from __future__ import annotations

from pathlib import Path

import scipy.io
from scipy.io.matlab import MatReadError, matfile_version

from s3fn.data.errors import S3FNDataError
from s3fn.io.containers import ContainerArray, Entry, choose_entry
from s3fn.io.hdf5 import open_hdf5


def open_mat(path: Path, key: str | None, ndim: int) -> ContainerArray:
    """The `ndim`-D array `key` (or the only one) of a MATLAB v5 or v7.3 file."""
    try:
        major, _ = matfile_version(str(path))
    except (MatReadError, ValueError) as exc:
        raise S3FNDataError(f"{path}: not a MATLAB .mat file ({exc})") from exc
    if major != 2:
        return choose_entry(path, _mat5_entries(path), key, ndim)
    return open_hdf5(path, key, ndim, matlab=True)


def _mat5_entries(path: Path) -> dict[str, Entry]:
    return {
        name: Entry(
            shape, lambda name=name: scipy.io.loadmat(str(path), variable_names=[name])[name]
        )
        for name, shape, matlab_class in scipy.io.whosmat(str(path))
        if matlab_class not in {"cell", "struct", "char", "object", "function", "sparse"}
    }
