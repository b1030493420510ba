"""The window store: windows of one split in an HDF5 file, streamed back as a torch Dataset.

Layout: `windows` (N x C x h x w float32, one chunk per window, compressed), `labels` (N),
`image_index` (N, into `image_ids`), `positions` (N x 2: window origin for object images, centre
for scenes), group `preprocessing` (the fitted `Preprocessor`), and attributes `format`,
`version`, `kind`, `split` and `class_names` (JSON).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import torch
from torch.utils.data import Dataset

from s3fn.data.errors import S3FNDataError
from s3fn.data.preprocess import Preprocessor

FORMAT = "s3fn.windows"
VERSION = 1
_STRINGS = h5py.string_dtype()


class WindowStoreWriter:
    """Appends batches of windows to a new store; the file gets its name only on a clean close.

    Use as a context manager. Writing goes to `<path>.partial`, which replaces `path` atomically
    at the end, so an interrupted run never leaves a truncated store under the real name.
    `compression` is "lzf" (fast, the default), "gzip" (portable, slower) or None; compressed
    windows are byte-shuffled first, which is what makes float32 data compress at all.
    """

    def __init__(
        self,
        path: str | os.PathLike,
        *,
        window_shape: tuple[int, int, int],
        class_names: Sequence[str],
        kind: str,
        split: str,
        preprocessor: Preprocessor | None = None,
        compression: str | None = "lzf",
        attrs: dict[str, Any] | None = None,
    ) -> None:
        if kind not in {"object", "scene"}:
            raise S3FNDataError(f"kind={kind!r}: expected 'object' or 'scene'")
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._partial = self.path.with_name(self.path.name + ".partial")
        self._file = h5py.File(self._partial, "w")
        self._file.attrs.update(
            {
                "format": FORMAT,
                "version": VERSION,
                "kind": kind,
                "split": split,
                "class_names": json.dumps(list(class_names)),
            }
        )
        self._file.attrs.update(attrs or {})
        self._n_classes = len(class_names)
        self.window_shape = tuple(int(n) for n in window_shape)
        self._file.create_dataset(
            "windows",
            shape=(0, *self.window_shape),
            maxshape=(None, *self.window_shape),
            dtype=np.float32,
            chunks=(1, *self.window_shape),
            compression=compression,
            shuffle=compression is not None,
        )
        for name, dtype, tail in (
            ("labels", np.int64, ()),
            ("image_index", np.int64, ()),
            ("positions", np.int64, (2,)),
        ):
            self._file.create_dataset(
                name, shape=(0, *tail), maxshape=(None, *tail), dtype=dtype, chunks=(4096, *tail)
            )
        if preprocessor is not None:
            preprocessor.to_hdf5(self._file.create_group("preprocessing"))
        self._image_ids: dict[str, int] = {}
        self.count = 0

    def append(
        self, windows: np.ndarray, labels: np.ndarray | int, image_id: str, positions: np.ndarray
    ) -> None:
        """Add n windows (n x C x h x w) of one image, with their labels and positions (n x 2)."""
        windows = np.asarray(windows, dtype=np.float32)
        if windows.shape[1:] != self.window_shape:
            raise S3FNDataError(
                f"{self.path}: windows of shape {windows.shape[1:]}; expected {self.window_shape}"
            )
        n = len(windows)
        labels = np.broadcast_to(np.asarray(labels, dtype=np.int64), (n,))
        if ((labels < 0) | (labels >= self._n_classes)).any():
            raise S3FNDataError(f"{self.path}: labels outside 0..{self._n_classes - 1}")
        index = self._image_ids.setdefault(image_id, len(self._image_ids))
        new = self.count + n
        for name, values in (
            ("windows", windows),
            ("labels", labels),
            ("image_index", np.full(n, index)),
            ("positions", np.asarray(positions).reshape(n, 2)),
        ):
            self._file[name].resize(new, axis=0)
            self._file[name][self.count : new] = values
        self.count = new

    def close(self) -> None:
        """Write the image ids and move the finished file to its name."""
        if not self._file.id.valid:
            return
        self._file.create_dataset("image_ids", data=list(self._image_ids), dtype=_STRINGS)
        self._file.close()
        os.replace(self._partial, self.path)

    def abort(self) -> None:
        """Close and delete the unfinished file."""
        if self._file.id.valid:
            self._file.close()
        self._partial.unlink(missing_ok=True)

    def __enter__(self) -> WindowStoreWriter:
        return self

    def __exit__(self, exc_type: object, *_: object) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


class WindowStore(Dataset):
    """A window store read as a map-style Dataset of (CxHxW float32 tensor, class index) pairs.

    Windows are read from disk on demand (larger-than-memory stores work); the file is opened
    lazily once per process, so DataLoader workers each get their own handle. `__getitems__`
    reads a whole batch in file order into one tensor. `in_memory=True` reads everything at once.
    `transform`, if given, is applied to each window tensor (e.g. augmentation).
    """

    def __init__(
        self,
        path: str | os.PathLike,
        *,
        transform: Callable[[torch.Tensor], torch.Tensor] | None = None,
        in_memory: bool = False,
    ) -> None:
        self.path = Path(path)
        self.transform = transform
        if not self.path.is_file():
            raise FileNotFoundError(f"{self.path}: window store not found")
        try:
            handle = h5py.File(self.path, "r")
        except OSError as exc:
            raise S3FNDataError(f"{self.path}: not a readable HDF5 file ({exc})") from exc
        with handle:
            self._read_metadata(handle)
            self._memory = torch.from_numpy(handle["windows"][()]) if in_memory else None
        self._handle: h5py.File | None = None
        self._pid = -1

    def _read_metadata(self, handle: h5py.File) -> None:
        if _text(handle.attrs.get("format")) != FORMAT or handle.attrs.get("version") != VERSION:
            raise S3FNDataError(
                f"{self.path}: attribute format/version is {_text(handle.attrs.get('format'))!r}/"
                f"{handle.attrs.get('version')!r}; expected {FORMAT!r}/{VERSION}"
            )
        for name in ("windows", "labels", "image_index", "positions", "image_ids"):
            if name not in handle:
                raise S3FNDataError(f"{self.path}: dataset {name!r} is missing")
        n = handle["windows"].shape[0]
        for name in ("labels", "image_index", "positions"):
            if handle[name].shape[0] != n:
                raise S3FNDataError(
                    f"{self.path}: dataset {name!r} has {handle[name].shape[0]} rows; expected {n}"
                )
        self.kind = _text(handle.attrs["kind"])
        self.split = _text(handle.attrs["split"])
        self.class_names: list[str] = json.loads(_text(handle.attrs["class_names"]))
        self.window_shape: tuple[int, int, int] = tuple(handle["windows"].shape[1:])
        self.labels: np.ndarray = handle["labels"][()]
        self.image_index: np.ndarray = handle["image_index"][()]
        self.positions: np.ndarray = handle["positions"][()]
        self.image_ids: list[str] = [_text(s) for s in handle["image_ids"][()]]
        self.attrs = {k: _text(v) for k, v in handle.attrs.items()}
        self.preprocessor = (
            Preprocessor.from_hdf5(handle["preprocessing"]) if "preprocessing" in handle else None
        )

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        index = self._check_index(index)
        if self._memory is not None:
            window = self._memory[index]
        else:
            window = torch.from_numpy(self._windows()[index])
        return self._sample(window, index)

    def __getitems__(self, indices: Sequence[int]) -> list[tuple[torch.Tensor, int]]:
        """Samples for a batch of indices, read in one go."""
        windows, _ = self.read(indices)
        return [
            self._sample(w, self._check_index(i)) for w, i in zip(windows, indices, strict=True)
        ]

    def read(self, indices: Sequence[int] | np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        """Windows (N x C x h x w) and labels (N) of `indices`, untransformed, in their order."""
        indices = np.array([self._check_index(int(i)) for i in indices], dtype=np.int64)
        if self._memory is not None:
            windows = self._memory[torch.from_numpy(indices)]
        else:
            dataset = self._windows()
            windows = torch.empty((len(indices), *self.window_shape), dtype=torch.float32)
            out = windows.numpy()
            for position in np.argsort(indices, kind="stable"):  # one chunk per window, in order
                out[position] = dataset[indices[position]]
        return windows, torch.from_numpy(self.labels[indices])

    def close(self) -> None:
        """Close this process's file handle (it reopens on the next read)."""
        if self._handle is not None:
            self._handle.close()
        self._handle = None

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_handle"] = None
        state["_pid"] = -1
        return state

    def _windows(self) -> h5py.Dataset:
        if self._handle is None or self._pid != os.getpid():
            self._handle = h5py.File(self.path, "r")
            self._pid = os.getpid()
        return self._handle["windows"]

    def _sample(self, window: torch.Tensor, index: int) -> tuple[torch.Tensor, int]:
        if self.transform is not None:
            window = self.transform(window)
        return window, int(self.labels[index])

    def _check_index(self, index: int) -> int:
        n = len(self.labels)
        if not -n <= index < n:
            raise IndexError(f"{self.path}: index {index} out of range for {n} windows")
        return index % n


def _text(value: Any) -> Any:
    return value.decode() if isinstance(value, bytes) else value
