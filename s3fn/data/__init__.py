"""Hyperspectral data: datasets, windows, preprocessing, leak-free splits, window store, and
the readers of `s3fn.io`.

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

from importlib import import_module

# Where each name lives, imported on first use: `s3fn.io` reads files with `s3fn.data.cube`
# and the datasets read files with `s3fn.io`, so importing this package loads neither.
_HOMES = {
    "BandFillWarning": "s3fn.data.resample",
    "BandResampler": "s3fn.data.resample",
    "Cube": "s3fn.data.cube",
    "CubeSource": "s3fn.io",
    "LeakageError": "s3fn.data.errors",
    "NoDataWarning": "s3fn.data.nodata",
    "ObjectDataset": "s3fn.data.datasets",
    "ObjectImage": "s3fn.data.datasets",
    "ObjectSample": "s3fn.data.datasets",
    "ObjectSplit": "s3fn.data.splits",
    "Preprocessor": "s3fn.data.preprocess",
    "S3FNDataError": "s3fn.data.errors",
    "SceneDataset": "s3fn.data.datasets",
    "SceneSplit": "s3fn.data.splits",
    "WindowBatch": "s3fn.data.pipeline",
    "WindowCutter": "s3fn.data.windows",
    "WindowStore": "s3fn.data.store",
    "WindowStoreWriter": "s3fn.data.store",
    "builtin": "s3fn.data.builtin",
    "check_no_leak": "s3fn.data.splits",
    "cut_object_windows": "s3fn.data.pipeline",
    "fit_object_preprocessor": "s3fn.data.pipeline",
    "fit_scene_preprocessor": "s3fn.data.pipeline",
    "from_array": "s3fn.io",
    "iter_object_windows": "s3fn.data.pipeline",
    "iter_scene_windows": "s3fn.data.pipeline",
    "label_sides": "s3fn.data.splits",
    "open_source": "s3fn.io",
    "prepare_object_stores": "s3fn.data.pipeline",
    "prepare_scene_stores": "s3fn.data.pipeline",
    "read_cube": "s3fn.io",
    "read_labels": "s3fn.io",
    "sample_origins": "s3fn.data.windows",
    "split_objects": "s3fn.data.splits",
    "split_scene": "s3fn.data.splits",
    "valid_origins": "s3fn.data.windows",
    "window_sums": "s3fn.data.windows",
    "write_windows": "s3fn.data.pipeline",
}

__all__ = sorted(_HOMES)


def __getattr__(name: str) -> object:
    """One of the names above (a module, for `builtin`), imported from its home on first use."""
    if name not in _HOMES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    module = import_module(_HOMES[name])
    value = module if module.__name__ == f"{__name__}.{name}" else getattr(module, name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    """The names above with whatever is loaded, so `dir()` lists them before their first use."""
    return sorted({*globals(), *_HOMES})
