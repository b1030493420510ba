"""Hyperspectral data: readers, datasets, windows, preprocessing, leak-free splits, window store.

Cubes are HxWxB float32 in files and NumPy; a window is Bxhxw float32; the model takes
Nx1xBxhxw. `s3fn.data.builtin.load` opens the built-in datasets made from measured spectra.

Object-level, from files to a DataLoader::

    dataset = ObjectDataset.from_folder("fruit/")  # root/<class>/<images>, or builtin.load(...)
    split = split_objects(dataset.labels, dataset.class_names, train=0.6, val=0.2, seed=0)
    stores = prepare_object_stores(dataset, split, "stores/", windows_per_image=20, size=32)
    loader = DataLoader(stores["train"], batch_size=32, shuffle=True, num_workers=2)

Scenes larger than memory: `open_source(path)` reads a cube window by window.

Scene-level: `SceneDataset.from_files(cube, labels, class_names)`, then
`split_scene(scene.labels, scene.class_names, window)` and `prepare_scene_stores(...)`.
"""

from s3fn.data import builtin
from s3fn.data.cube import Cube
from s3fn.data.datasets import ObjectDataset, ObjectImage, ObjectSample, SceneDataset
from s3fn.data.errors import LeakageError, S3FNDataError
from s3fn.data.pipeline import (
    WindowBatch,
    cut_object_windows,
    fit_object_preprocessor,
    fit_scene_preprocessor,
    iter_object_windows,
    iter_scene_windows,
    prepare_object_stores,
    prepare_scene_stores,
    write_windows,
)
from s3fn.data.preprocess import Preprocessor
from s3fn.data.readers import read_cube, read_labels
from s3fn.data.resample import BandResampler
from s3fn.data.sources import CubeSource, from_array, open_source
from s3fn.data.splits import ObjectSplit, SceneSplit, check_no_leak, split_objects, split_scene
from s3fn.data.store import WindowStore, WindowStoreWriter
from s3fn.data.windows import WindowCutter, sample_origins, valid_origins, window_sums

__all__ = [
    "BandResampler",
    "Cube",
    "CubeSource",
    "LeakageError",
    "ObjectDataset",
    "ObjectImage",
    "ObjectSample",
    "ObjectSplit",
    "Preprocessor",
    "S3FNDataError",
    "SceneDataset",
    "SceneSplit",
    "WindowBatch",
    "WindowCutter",
    "WindowStore",
    "WindowStoreWriter",
    "builtin",
    "check_no_leak",
    "cut_object_windows",
    "fit_object_preprocessor",
    "fit_scene_preprocessor",
    "from_array",
    "iter_object_windows",
    "iter_scene_windows",
    "open_source",
    "prepare_object_stores",
    "prepare_scene_stores",
    "read_cube",
    "read_labels",
    "sample_origins",
    "split_objects",
    "split_scene",
    "valid_origins",
    "window_sums",
    "write_windows",
]
