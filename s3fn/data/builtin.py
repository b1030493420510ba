"""Built-in datasets made from real measured spectra (earthlib), generated once into a cache.

- "materials": object-level, 16 images per class of 8 material classes (`CLASS_NAMES`), each an
  irregular object of 48-60 px on a zero background, 180 bands from 400 to 2450 nm.
- "materials-scene": scene-level, one 144 x 144 scene of material fields crossed by roads, with a
  label map (0 = unlabelled).

Images are ENVI files (int16 BIL, "reflectance scale factor = 10000"), so they are read back by
the same readers as user data. The same name and seed always give the same files.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import spectral.io.envi as envi

from s3fn.cache_dir import cache_root
from s3fn.data.datasets import ObjectDataset, SceneDataset
from s3fn.data.errors import S3FNDataError
from s3fn.data.spectral_library import MATERIALS, SpectralLibrary, load_library
from s3fn.data.synthetic import object_image, scene_image
from s3fn.data.windows import valid_origins

NAMES = ("materials", "materials-scene")
CLASS_NAMES: list[str] = list(MATERIALS)
IMAGES_PER_CLASS = 16
OBJECT_SIZES = (48, 60)
SCENE_SIZE = 144
REFLECTANCE_SCALE = 10000
VERSION = 1
_COMPLETE = "complete.json"
_MIN_WINDOWS = 16  # every object holds at least this many distinct 32 x 32 windows


def load(
    name: str, *, seed: int = 0, cache_dir: str | os.PathLike | None = None
) -> ObjectDataset | SceneDataset:
    """Open built-in dataset `name` ("materials" or "materials-scene"), generating it if needed.

    Generation takes a few seconds and writes under `cache_dir` (default: `cache_root()`).
    """
    if name not in NAMES:
        raise S3FNDataError(f"built-in dataset {name!r}: expected one of {', '.join(NAMES)}")
    root = Path(cache_dir) if cache_dir is not None else cache_root()
    folder = root / "builtin" / f"{name}-v{VERSION}-seed{seed}"
    if not (folder / _COMPLETE).is_file():
        generate(name, folder, seed=seed)
    if name == "materials":
        return ObjectDataset.from_folder(folder, class_names=CLASS_NAMES)
    return SceneDataset.from_files(folder / "scene.hdr", folder / "labels.hdr", CLASS_NAMES)


def generate(name: str, folder: str | os.PathLike, *, seed: int = 0) -> Path:
    """Write built-in dataset `name` into `folder` (atomically: all files or none) and return it."""
    folder = Path(folder)
    partial = folder.with_name(f"{folder.name}.partial-{os.getpid()}")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    try:
        library = load_library()
        if name == "materials":
            _write_objects(partial, library, seed)
        elif name == "materials-scene":
            _write_scene(partial, library, seed)
        else:
            raise S3FNDataError(f"built-in dataset {name!r}: expected one of {', '.join(NAMES)}")
        info = {
            "name": name,
            "version": VERSION,
            "seed": seed,
            "class_names": CLASS_NAMES,
            "source": "earthlib spectral library (spectra.sli), grouped by LEVEL_3",
            "materials": {k: list(v) for k, v in MATERIALS.items()},
        }
        (partial / _COMPLETE).write_text(json.dumps(info, indent=2))
        try:
            partial.rename(folder)
        except OSError:  # another process finished the same dataset first
            if not (folder / _COMPLETE).is_file():
                raise
    finally:
        shutil.rmtree(partial, ignore_errors=True)
    return folder


def _write_objects(folder: Path, library: SpectralLibrary, seed: int) -> None:
    for k, material in enumerate(CLASS_NAMES):
        (folder / material).mkdir()
        for i in range(IMAGES_PER_CLASS):
            rng = np.random.default_rng([seed, 0, k, i])
            size = int(rng.integers(OBJECT_SIZES[0], OBJECT_SIZES[1] + 1))
            image = object_image(library, material, size, rng)
            while len(valid_origins(image.sum(axis=2) > 0, 32)) < _MIN_WINDOWS:
                image = object_image(library, material, size, rng)
            stem = f"{material.replace(' ', '_')}_{i:03d}"
            _save_envi(folder / material / f"{stem}.hdr", image, library.wavelengths)


def _write_scene(folder: Path, library: SpectralLibrary, seed: int) -> None:
    image, labels = scene_image(library, SCENE_SIZE, np.random.default_rng([seed, 1]))
    _save_envi(folder / "scene.hdr", image, library.wavelengths)
    envi.save_image(
        str(folder / "labels.hdr"),
        labels[..., None].astype(np.uint8),
        dtype=np.uint8,
        metadata={
            "class names": ["unlabelled", *CLASS_NAMES],
            "description": "s3fn materials-scene label map",
        },
    )


def _save_envi(path: Path, image: np.ndarray, wavelengths: np.ndarray) -> None:
    scaled = np.clip(np.round(image * REFLECTANCE_SCALE), -32768, 32767).astype(np.int16)
    metadata = {
        "wavelength": [f"{w:g}" for w in wavelengths],
        "wavelength units": "Nanometers",
        "reflectance scale factor": REFLECTANCE_SCALE,
        "description": "s3fn built-in dataset, made from earthlib spectra",
    }
    envi.save_image(str(path), scaled, dtype=np.int16, interleave="bil", metadata=metadata)
