"""Object-level datasets (folder, manifest, masks) and scene-level datasets."""

from __future__ import annotations

import numpy as np
import pytest
import spectral.io.envi as envi

from s3fn.data import Cube, ObjectDataset, S3FNDataError, SceneDataset
from tests.data_helpers import cube, object_cube, write_object_folder

CLASSES = ["ripe", "unripe"]


def test_folder_dataset_classes_labels_ids_and_threshold_mask(tmp_path):
    root = write_object_folder(tmp_path / "fruit", CLASSES, per_class=3)
    (root / "ripe" / "notes.txt").write_text("ignored")
    dataset = ObjectDataset.from_folder(root)
    assert dataset.class_names == CLASSES
    assert len(dataset) == 6
    np.testing.assert_array_equal(dataset.labels, [0, 0, 0, 1, 1, 1])
    assert dataset.image_ids[4] == "unripe/unripe_1.npy"
    sample = dataset[4]
    assert sample.label == 1 and sample.image_id == "unripe/unripe_1.npy"
    np.testing.assert_array_equal(sample.mask, sample.cube.data.sum(axis=2) > 0)
    assert 0.5 < sample.mask.mean() < 1.0


def test_folder_dataset_with_envi_images_mask_files_and_given_class_order(tmp_path):
    rng = np.random.default_rng(0)
    for name in CLASSES:
        (tmp_path / name).mkdir()
        image = object_cube(10, 4, rng, 0.5)
        envi.save_image(str(tmp_path / name / "a.hdr"), image, interleave="bil")
        mask = np.zeros((10, 10), np.uint8)
        mask[2:5, 3:7] = 1
        np.save(tmp_path / name / "a_mask.npy", mask)
    dataset = ObjectDataset.from_folder(tmp_path, class_names=["unripe", "ripe"])
    assert [im.path.name for im in dataset.images] == ["a.hdr", "a.hdr"]
    np.testing.assert_array_equal(dataset.labels, [0, 1])
    assert dataset[0].image_id == "unripe/a.hdr"
    assert dataset[0].mask.sum() == 12 and dataset[0].mask[2:5, 3:7].all()


def test_manifest_dataset_with_mask_column(tmp_path):
    rng = np.random.default_rng(0)
    for i in range(3):
        np.save(tmp_path / f"img{i}.npy", object_cube(8, 3, rng, 0.3))
    np.save(tmp_path / "m0.npy", np.ones((8, 8), bool))
    (tmp_path / "list.csv").write_text(
        "path,label,mask\nimg0.npy,good,m0.npy\nimg1.npy,bad,\nimg2.npy,good,\n"
    )
    dataset = ObjectDataset.from_manifest(tmp_path / "list.csv")
    assert dataset.class_names == ["bad", "good"]
    np.testing.assert_array_equal(dataset.labels, [1, 0, 1])
    assert dataset[0].mask.all()
    assert not dataset[1].mask.all()
    assert dataset.image_ids == ["img0.npy", "img1.npy", "img2.npy"]


def test_manifest_errors(tmp_path):
    manifest = tmp_path / "list.csv"
    manifest.write_text("file,class\na.npy,x\n")
    with pytest.raises(
        S3FNDataError, match=r"list\.csv: header is file,class; expected path,label"
    ):
        ObjectDataset.from_manifest(manifest)
    manifest.write_text("path,label\nmissing.npy,x\n")
    with pytest.raises(FileNotFoundError, match=r"list\.csv line 2: image file 'missing\.npy' not"):
        ObjectDataset.from_manifest(manifest)
    np.save(tmp_path / "a.npy", cube())
    manifest.write_text("path,label\na.npy,x\na.npy,y\n")
    with pytest.raises(S3FNDataError, match=r"line 3: label 'y'; expected one of \['x'\]"):
        ObjectDataset.from_manifest(manifest, class_names=["x"])
    with pytest.raises(FileNotFoundError, match="manifest not found"):
        ObjectDataset.from_manifest(tmp_path / "none.csv")


def test_folder_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="dataset folder not found"):
        ObjectDataset.from_folder(tmp_path / "none")
    (tmp_path / "empty_class").mkdir()
    with pytest.raises(S3FNDataError, match=r"empty_class: no image files; expected 'empty_class'"):
        ObjectDataset.from_folder(tmp_path)
    with pytest.raises(FileNotFoundError, match="class folder 'other' not found"):
        ObjectDataset.from_folder(tmp_path, class_names=["other"])


def test_mask_file_of_the_wrong_shape(tmp_path):
    (tmp_path / "c").mkdir()
    np.save(tmp_path / "c" / "x.npy", cube(6, 5, 2))
    np.save(tmp_path / "c" / "x_mask.npy", np.ones((5, 5), np.uint8))
    with pytest.raises(S3FNDataError, match=r"x_mask\.npy: mask is \(5, 5\); expected \(6, 5\)"):
        ObjectDataset.from_folder(tmp_path)[0]


def test_scene_dataset_from_files_and_counts(tmp_path):
    data = cube(6, 5, 4)
    labels = np.zeros((6, 5), np.uint8)
    labels[0, :3] = 1
    labels[4, :] = 2
    envi.save_image(str(tmp_path / "scene.hdr"), data, metadata={"wavelength": [1, 2, 3, 4]})
    np.save(tmp_path / "gt.npy", labels)
    scene = SceneDataset.from_files(tmp_path / "scene.hdr", tmp_path / "gt.npy", ["corn", "soy"])
    assert scene.name == "scene"
    assert scene.class_counts() == {"corn": 3, "soy": 5}
    np.testing.assert_array_equal(scene.cube.data, data)
    np.testing.assert_array_equal(scene.cube.wavelengths, [1000.0, 2000.0, 3000.0, 4000.0])


def test_scene_dataset_checks():
    data = cube(4, 4, 2)
    with pytest.raises(
        S3FNDataError, match=r"label map is \(3, 4\); expected \(4, 4\) like the cube"
    ):
        SceneDataset(Cube(data), np.zeros((3, 4), np.int64), ["a"])
    with pytest.raises(S3FNDataError, match=r"label map holds 3 but there are 2 class names"):
        SceneDataset(Cube(data), np.full((4, 4), 3), ["a", "b"])
