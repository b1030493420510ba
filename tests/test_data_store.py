"""The HDF5 window store: exact round trip, atomic writing, streaming reads, DataLoader workers."""

from __future__ import annotations

import pickle

import h5py
import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from s3fn.data import Preprocessor, S3FNDataError, WindowStore, WindowStoreWriter

CLASSES = ["a", "b", "c"]


def _batches(n_images=4, per_image=5, shape=(3, 4, 4)):
    rng = np.random.default_rng(0)
    for i in range(n_images):
        windows = rng.normal(size=(per_image, *shape)).astype(np.float32)
        yield windows, i % 3, f"img{i}", rng.integers(0, 50, (per_image, 2))


def _write(path, compression="lzf", preprocessor=None):
    written = list(_batches())
    with WindowStoreWriter(
        path,
        window_shape=(3, 4, 4),
        class_names=CLASSES,
        kind="object",
        split="train",
        preprocessor=preprocessor,
        compression=compression,
        attrs={"seed": 3},
    ) as writer:
        for windows, label, image_id, positions in written:
            writer.append(windows, label, image_id, positions)
    return written


@pytest.mark.parametrize("compression", ["lzf", "gzip", None])
def test_round_trip_is_exact(tmp_path, compression):
    fitted = Preprocessor.fit(np.random.default_rng(1).normal(size=(100, 7)), n_components=3)
    written = _write(tmp_path / "train.h5", compression, fitted)
    store = WindowStore(tmp_path / "train.h5")
    assert len(store) == 20 and store.window_shape == (3, 4, 4)
    assert store.class_names == CLASSES and store.kind == "object" and store.split == "train"
    assert store.image_ids == ["img0", "img1", "img2", "img3"]
    assert store.attrs["seed"] == 3
    np.testing.assert_array_equal(store.labels, np.repeat([0, 1, 2, 0], 5))
    np.testing.assert_array_equal(store.image_index, np.repeat([0, 1, 2, 3], 5))
    np.testing.assert_array_equal(store.positions, np.concatenate([b[3] for b in written]))
    everything = np.concatenate([b[0] for b in written])
    for i in (0, 7, 19, -1):
        window, label = store[i]
        assert window.dtype == torch.float32 and window.shape == (3, 4, 4)
        np.testing.assert_array_equal(window.numpy(), everything[i])
        assert label == store.labels[i]
    windows, labels = store.read([19, 3, 3, 0])
    np.testing.assert_array_equal(windows.numpy(), everything[[19, 3, 3, 0]])
    np.testing.assert_array_equal(labels.numpy(), store.labels[[19, 3, 3, 0]])
    np.testing.assert_array_equal(store.preprocessor.components, fitted.components)
    with h5py.File(tmp_path / "train.h5") as handle:
        assert handle["windows"].chunks == (1, 3, 4, 4)
        assert handle["windows"].compression == compression


def test_in_memory_store_and_transform(tmp_path):
    _write(tmp_path / "s.h5")
    streamed = WindowStore(tmp_path / "s.h5")
    loaded = WindowStore(tmp_path / "s.h5", in_memory=True, transform=lambda w: w * 2)
    for i in range(len(streamed)):
        np.testing.assert_array_equal(loaded[i][0].numpy(), streamed[i][0].numpy() * 2)
    assert [label for _, label in loaded.__getitems__([4, 5])] == [0, 1]


def test_interrupted_writing_leaves_no_store(tmp_path):
    path = tmp_path / "train.h5"
    with (
        pytest.raises(RuntimeError, match="disk on fire"),
        WindowStoreWriter(
            path, window_shape=(1, 2, 2), class_names=CLASSES, kind="scene", split="train"
        ) as writer,
    ):
        writer.append(np.zeros((3, 1, 2, 2)), 0, "scene", np.zeros((3, 2)))
        raise RuntimeError("disk on fire")
    assert list(tmp_path.iterdir()) == []


def test_writer_refuses_bad_batches(tmp_path):
    with WindowStoreWriter(
        tmp_path / "x.h5", window_shape=(1, 2, 2), class_names=CLASSES, kind="object", split="test"
    ) as writer:
        with pytest.raises(
            S3FNDataError, match=r"windows of shape \(1, 3, 3\); expected \(1, 2, 2\)"
        ):
            writer.append(np.zeros((1, 1, 3, 3)), 0, "i", np.zeros((1, 2)))
        with pytest.raises(S3FNDataError, match=r"labels outside 0\.\.2"):
            writer.append(np.zeros((1, 1, 2, 2)), 3, "i", np.zeros((1, 2)))
    with pytest.raises(S3FNDataError, match="kind='pixel': expected 'object' or 'scene'"):
        WindowStoreWriter(
            tmp_path / "y.h5",
            window_shape=(1, 2, 2),
            class_names=CLASSES,
            kind="pixel",
            split="test",
        )


def _collect(loader):
    windows, labels = zip(*loader, strict=True)
    return torch.cat(windows), torch.cat(labels)


@pytest.mark.parametrize("num_workers", [0, 2])
def test_dataloader_workers_read_every_window_once(tmp_path, num_workers):
    written = _write(tmp_path / "s.h5")
    store = WindowStore(tmp_path / "s.h5")
    store[0]  # an open handle in the parent must not be shared with the workers
    loader = DataLoader(store, batch_size=6, shuffle=False, num_workers=num_workers)
    windows, labels = _collect(loader)
    np.testing.assert_array_equal(windows.numpy(), np.concatenate([b[0] for b in written]))
    np.testing.assert_array_equal(labels.numpy(), store.labels)
    shuffled = DataLoader(
        store,
        batch_size=4,
        shuffle=True,
        num_workers=num_workers,
        generator=torch.Generator().manual_seed(0),
    )
    windows, labels = _collect(shuffled)
    assert sorted(labels.tolist()) == sorted(store.labels.tolist())
    assert torch.isclose(
        windows.sum(), torch.from_numpy(np.concatenate([b[0] for b in written])).sum()
    )


def test_store_pickles_without_its_file_handle(tmp_path):
    _write(tmp_path / "s.h5")
    store = WindowStore(tmp_path / "s.h5")
    store[1]
    copy = pickle.loads(pickle.dumps(store))
    np.testing.assert_array_equal(copy[1][0].numpy(), store[1][0].numpy())
    store.close()
    np.testing.assert_array_equal(store[1][0].numpy(), copy[1][0].numpy())


def test_bad_store_files(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"none\.h5: window store not found"):
        WindowStore(tmp_path / "none.h5")
    (tmp_path / "junk.h5").write_bytes(b"junk")
    with pytest.raises(S3FNDataError, match=r"junk\.h5: not a readable HDF5 file"):
        WindowStore(tmp_path / "junk.h5")
    with h5py.File(tmp_path / "other.h5", "w") as handle:
        handle.attrs["format"] = "something"
    with pytest.raises(S3FNDataError, match=r"other\.h5: attribute format/version is 'something'"):
        WindowStore(tmp_path / "other.h5")
    _write(tmp_path / "s.h5")
    with h5py.File(tmp_path / "s.h5", "a") as handle:
        del handle["labels"]
        handle.create_dataset("labels", data=np.zeros(3, np.int64))
    with pytest.raises(S3FNDataError, match=r"s\.h5: dataset 'labels' has 3 rows; expected 20"):
        WindowStore(tmp_path / "s.h5")
    _write(tmp_path / "t.h5")
    with pytest.raises(IndexError, match="index 20 out of range for 20 windows"):
        WindowStore(tmp_path / "t.h5")[20]
