"""From datasets to stores: training-only fitting, transform-once cutting, leak-free stores."""

from __future__ import annotations

import numpy as np
import pytest
import spectral.io.envi as envi

from s3fn.data import (
    Cube,
    ObjectDataset,
    Preprocessor,
    S3FNDataError,
    SceneDataset,
    cut_object_windows,
    fit_object_preprocessor,
    iter_object_windows,
    prepare_object_stores,
    prepare_scene_stores,
    split_objects,
    split_scene,
    write_windows,
)
from tests.data_helpers import cube, object_cube, write_object_folder

CLASSES = ["a", "b", "c"]


def test_cut_windows_equal_transforming_each_window():
    rng = np.random.default_rng(0)
    image = object_cube(24, 6, rng, 0.4)
    mask = image.sum(axis=2) > 0
    fitted = Preprocessor.fit(image[mask], n_components=3)
    windows, origins = cut_object_windows(image, mask, fitted, 7, 8, np.random.default_rng(1))
    assert windows.shape == (7, 3, 8, 8)
    raw = np.stack([image[r : r + 8, c : c + 8].transpose(2, 0, 1) for r, c in origins])
    np.testing.assert_allclose(windows, fitted.transform_windows(raw), rtol=1e-5, atol=1e-5)
    assert all(mask[r : r + 8, c : c + 8].all() for r, c in origins)
    plain, _ = cut_object_windows(Cube(image), mask, None, 7, 8, np.random.default_rng(1))
    np.testing.assert_array_equal(plain, raw)


def test_windows_of_an_image_do_not_depend_on_the_other_images(tmp_path):
    dataset = ObjectDataset.from_folder(write_object_folder(tmp_path, CLASSES, per_class=2))
    alone = next(iter_object_windows(dataset, [3], None, windows_per_image=4, size=6, seed=5))
    together = list(iter_object_windows(dataset, [0, 3], None, windows_per_image=4, size=6, seed=5))
    np.testing.assert_array_equal(together[1].windows, alone.windows)
    np.testing.assert_array_equal(together[1].positions, alone.positions)
    assert alone.image_id == "b/b_1.npy" and (alone.labels == 1).all()
    other = next(iter_object_windows(dataset, [3], None, windows_per_image=4, size=6, seed=6))
    assert not np.array_equal(other.positions, alone.positions)


def test_object_stores_fit_on_training_images_only(tmp_path):
    dataset = ObjectDataset.from_folder(write_object_folder(tmp_path / "d", CLASSES, per_class=4))
    split = split_objects(dataset.labels, dataset.class_names, train=2, val=1, seed=0)
    stores = prepare_object_stores(
        dataset, split, tmp_path / "stores", windows_per_image=5, size=8, n_components=4
    )
    assert sorted(stores) == ["test", "train", "val"]
    train_pixels = [dataset[i].cube.data[dataset[i].mask] for i in split.train]
    expected = Preprocessor.fit(train_pixels, n_components=4)
    for store in stores.values():
        np.testing.assert_allclose(store.preprocessor.components, expected.components, atol=1e-6)
        assert store.window_shape == (4, 8, 8)
    ids = {part: set(store.image_ids) for part, store in stores.items()}
    assert not ids["train"] & ids["test"] and not ids["train"] & ids["val"]
    assert ids["test"] == {dataset.image_ids[i] for i in split.test}
    assert len(stores["train"]) == 5 * len(split.train)
    test = stores["test"]
    first = dataset.image_ids.index(test.image_ids[0])
    r, c = test.positions[0]
    raw = dataset[first].cube.data[r : r + 8, c : c + 8].transpose(2, 0, 1)[None]
    np.testing.assert_allclose(test[0][0].numpy(), expected.transform_windows(raw)[0], atol=1e-4)
    assert test[0][1] == dataset.labels[first]


def test_fit_object_preprocessor_keeps_wavelengths_and_needs_images(tmp_path):
    (tmp_path / "x").mkdir()
    envi.save_image(
        str(tmp_path / "x" / "i.hdr"), cube(5, 5, 3), metadata={"wavelength": [1, 2, 3]}
    )
    dataset = ObjectDataset.from_folder(tmp_path)
    fitted = fit_object_preprocessor(dataset, [0], n_components=2)
    np.testing.assert_array_equal(fitted.wavelengths, [1000.0, 2000.0, 3000.0])
    with pytest.raises(S3FNDataError, match="no training images"):
        fit_object_preprocessor(dataset, [])


def test_scene_stores_are_centred_leak_free_and_fitted_on_training_blocks(tmp_path):
    rng = np.random.default_rng(0)
    labels = np.kron(rng.integers(0, 4, (8, 8)), np.ones((5, 5), np.int64))
    scene = SceneDataset(Cube(cube(40, 40, 6)), labels, CLASSES, name="field")
    split = split_scene(labels, CLASSES, 5, block_size=10, seed=2)
    stores = prepare_scene_stores(scene, split, tmp_path, n_components=3)
    expected = Preprocessor.fit(scene.cube.data[split.region("train")], n_components=3)
    transformed = expected.transform_cube(scene.cube)
    for part, store in stores.items():
        np.testing.assert_array_equal(store.positions, split.part(part))
        np.testing.assert_array_equal(store.labels, split.part_labels(part))
        assert store.image_ids == ["field"] and store.kind == "scene"
        rows, cols = store.positions[:, 0], store.positions[:, 1]
        centres = store.read(np.arange(len(store)))[0][:, :, 2, 2].numpy()
        np.testing.assert_allclose(centres, transformed[rows, cols], atol=1e-4)


def test_write_windows_needs_windows(tmp_path):
    with pytest.raises(S3FNDataError, match=r"empty\.h5: no windows to write"):
        write_windows(
            tmp_path / "empty.h5",
            iter([]),
            class_names=CLASSES,
            kind="object",
            split="test",
            preprocessor=None,
        )
    assert not (tmp_path / "empty.h5").exists()
