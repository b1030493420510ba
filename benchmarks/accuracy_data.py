"""Datasets of the accuracy benchmark (`benchmarks.accuracy`), written as files the package reads.

- the built-in object data and scene (`builtin:materials`, `builtin:materials-scene`);
- "small-objects": small irregular objects (12-20 px) in 24-32 px images, a few classes of the
  spectral library, stored as raw-looking uint16 ENVI images (reflectance x 10000, no scale
  factor) with the water-absorption bands that the library lacks put back as noisy, near-zero
  bands, and one mask file per image (the background is dim but not zero);
- the real scenes of `shared/data/real` (Samson, Jasper Ridge, Moffett) as .npy cube + label map;
- "crop-fields": a simulated canopy scene whose five crop states are spectrally close, in
  fields that each have their own gain, offset and soil mixing, so that a model trained on
  some fields meets others that look a little different.

Everything is written once into a cache folder outside the repository and is deterministic
from its seed.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import spectral.io.envi as envi

from s3fn.data.spectral_library import SpectralLibrary, load_library
from s3fn.data.synthetic import object_image

OBJECT_KIND, SCENE_KIND = "object", "scene"
BUILTIN_KINDS = {"materials": OBJECT_KIND, "materials-scene": SCENE_KIND}
# The real scenes: benchmark name -> file in the real-data folder.
REAL_SCENES = {
    "samson": "samson.npz",
    "jasper-ridge": "jasper_ridge.npz",
    "moffett": "moffett.npz",
}
REAL_LABELS_KEY = "labels_pure0p6"
REAL_DESCRIPTIONS = Path(__file__).parent / "descriptions" / "real_scenes.yaml"
FIELD_DESCRIPTIONS = Path(__file__).parent / "descriptions" / "crop_fields.yaml"
DEFAULT_REAL_DIR = Path(__file__).resolve().parents[2] / "shared" / "data" / "real"

SMALL_CLASSES = ("soil", "plant litter", "wood", "composition shingle")
SMALL_IMAGES_PER_CLASS = 20
SMALL_OBJECT_SIZES = (12, 20)
SMALL_IMAGE_SIZES = (24, 32)
DN_SCALE = 10000  # reflectance 1.0 -> 10000 DN, as many sensors' scaled-reflectance products
WATER_TRANSMISSION = 0.03  # fraction of the signal that survives in a water-absorption band
WATER_NOISE = 0.01  # reflectance units of noise in those bands (100 DN)
SMALL_VERSION = 1
_COMPLETE = "complete.json"


@dataclass(frozen=True)
class BenchData:
    """One benchmark dataset: how `s3fn train` opens it and which descriptions it uses."""

    name: str
    kind: str
    data: str
    descriptions: str
    labels: str | None = None
    classes: tuple[str, ...] | None = None

    def config_fields(self) -> dict[str, object]:
        """The `TrainConfig` fields that point at this dataset."""
        fields: dict[str, object] = {"data": self.data, "descriptions": self.descriptions}
        if self.labels is not None:
            fields["labels"] = self.labels
        if self.classes is not None:
            fields["classes"] = list(self.classes)
        return fields


def class_name(raw: str) -> str:
    """A real scene's endmember name as a class name: "2-Tree" -> "tree"."""
    return re.sub(r"^\d+\s*[-_.]\s*", "", raw.strip()).lower()


def builtin_data(name: str) -> BenchData:
    """The built-in dataset `name` ("materials" or "materials-scene")."""
    return BenchData(name, BUILTIN_KINDS[name], f"builtin:{name}", "bundled:materials")


def raw_band_set(
    image: np.ndarray, wavelengths: np.ndarray, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """`image` (H x W x B reflectance) with the bands missing from `wavelengths` put back.

    Each gap wider than 1.5 band steps (the water-absorption windows the library removed) is
    filled at the library's band step with a weak copy of the signal interpolated across the
    gap plus strong noise, as a raw sensor records it. Returns (image, wavelengths).
    """
    step = float(np.median(np.diff(wavelengths)))
    columns, centres = [], []
    for j in range(len(wavelengths)):
        columns.append(image[..., j])
        centres.append(float(wavelengths[j]))
        if j + 1 == len(wavelengths) or wavelengths[j + 1] - wavelengths[j] <= 1.5 * step:
            continue
        left, right = image[..., j], image[..., j + 1]
        for w in np.arange(wavelengths[j] + step, wavelengths[j + 1] - step / 2, step):
            frac = (w - wavelengths[j]) / (wavelengths[j + 1] - wavelengths[j])
            signal = (1 - frac) * left + frac * right
            noise = WATER_NOISE * rng.standard_normal(signal.shape)
            columns.append(WATER_TRANSMISSION * signal + noise)
            centres.append(float(w))
    return np.stack(columns, axis=-1), np.array(centres)


def to_dn(image: np.ndarray) -> np.ndarray:
    """Reflectance as uint16 digital numbers (x `DN_SCALE`, clipped at 0 and 65535)."""
    return np.clip(np.round(image * DN_SCALE), 0, np.iinfo(np.uint16).max).astype(np.uint16)


def small_object_image(
    library: SpectralLibrary,
    material: str,
    rng: np.random.Generator,
    object_sizes: tuple[int, int] = SMALL_OBJECT_SIZES,
    image_sizes: tuple[int, int] = SMALL_IMAGE_SIZES,
) -> tuple[np.ndarray, np.ndarray]:
    """One object image: (H x W x B reflectance, H x W object mask), B as the library; the
    object and image sides are drawn from the given (lo, hi) ranges."""
    size = int(rng.integers(object_sizes[0], object_sizes[1] + 1))
    side = int(rng.integers(max(image_sizes[0], size + 4), image_sizes[1] + 1))
    obj = object_image(library, material, size, rng)
    inside = np.any(obj != 0, axis=-1)
    background = library.unlabelled[rng.integers(len(library.unlabelled))]
    canvas = rng.uniform(0.03, 0.08) * np.broadcast_to(background, (side, side, len(background)))
    canvas = canvas + 0.002 * rng.standard_normal(canvas.shape)
    mask = np.zeros((side, side), dtype=bool)
    r0, c0 = (int(v) for v in rng.integers(0, side - size + 1, 2))
    window = canvas[r0 : r0 + size, c0 : c0 + size]
    window[inside] = obj[inside]
    mask[r0 : r0 + size, c0 : c0 + size] = inside
    return canvas, mask


def write_small_objects(
    folder: str | os.PathLike,
    *,
    seed: int = 0,
    images_per_class: int = SMALL_IMAGES_PER_CLASS,
    classes: tuple[str, ...] = SMALL_CLASSES,
    object_sizes: tuple[int, int] = SMALL_OBJECT_SIZES,
    image_sizes: tuple[int, int] = SMALL_IMAGE_SIZES,
) -> Path:
    """Write the small-objects dataset (or objects of other sizes) into `folder`
    (root/<class>/<image>.hdr + _mask.hdr).

    Written into a sibling folder first and renamed, so a folder that exists is complete.
    """
    folder = Path(folder)
    if (folder / _COMPLETE).is_file():
        return folder
    partial = folder.with_name(f"{folder.name}.partial-{os.getpid()}")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    try:
        library = load_library()
        for k, material in enumerate(classes):
            (partial / material).mkdir()
            for i in range(images_per_class):
                rng = np.random.default_rng([seed, k, i])
                image, mask = small_object_image(library, material, rng, object_sizes, image_sizes)
                raw, wavelengths = raw_band_set(image, library.wavelengths, rng)
                stem = partial / material / f"{material.replace(' ', '_')}_{i:03d}"
                _save_image(stem, to_dn(raw), wavelengths)
                envi.save_image(
                    f"{stem}_mask.hdr", mask[..., None].astype(np.uint8), dtype=np.uint8
                )
        info = {"seed": seed, "version": SMALL_VERSION, "classes": list(classes)}
        (partial / _COMPLETE).write_text(json.dumps(info, indent=2) + "\n")
        partial.rename(folder)
    finally:
        shutil.rmtree(partial, ignore_errors=True)
    return folder


def _save_image(stem: Path, dn: np.ndarray, wavelengths: np.ndarray) -> None:
    metadata = {
        "wavelength": [f"{w:g}" for w in wavelengths],
        "wavelength units": "Nanometers",
        "description": "s3fn accuracy benchmark: small objects, raw uint16 DN",
    }
    envi.save_image(f"{stem}.hdr", dn, dtype=np.uint16, interleave="bil", metadata=metadata)


def small_objects_data(cache: Path, *, seed: int = 0) -> BenchData:
    """The small-objects dataset (written into `cache` on first use)."""
    folder = write_small_objects(cache / f"small-objects-v{SMALL_VERSION}-seed{seed}", seed=seed)
    return BenchData("small-objects", OBJECT_KIND, str(folder), "bundled:materials")


FIELD_CLASSES = ("crop state 1", "crop state 2", "crop state 3", "crop state 4", "crop state 5")
FIELD_SCENE_SIZE = 96
FIELD_SIDE = (12, 20)  # field side range in pixels
FIELD_GAIN = (0.85, 1.15)  # illumination / sensor gain of a field
FIELD_OFFSET = 0.02  # +- additive offset of a field (path radiance, calibration)
FIELD_SOIL = (0.0, 0.35)  # soil fraction of a field's pixels (canopy cover)
FIELD_NOISE = 0.005
FIELD_VERSION = 1


def field_scene(
    library: SpectralLibrary, rng: np.random.Generator, size: int = FIELD_SCENE_SIZE
) -> tuple[np.ndarray, np.ndarray]:
    """(size x size x B reflectance, size x size labels 1..5, 0 on field borders and roads).

    The five classes are the quintiles of the library's canopy spectra ordered by their red-edge
    NDVI, so neighbouring classes differ subtly; each pixel is a random canopy of its class.
    Fields tile the scene in rows of random widths; each field draws its class, a gain, an
    offset and a mean soil fraction (its pixels vary around it), which is the field-to-field
    variation a model must carry across regions."""
    canopy = library.spectra["green vegetation"]
    soil = library.spectra["soil"]
    wavelengths = library.wavelengths
    red = np.argmin(np.abs(wavelengths - 705.0))
    nir = np.argmin(np.abs(wavelengths - 750.0))
    index = (canopy[:, nir] - canopy[:, red]) / (canopy[:, nir] + canopy[:, red])
    groups = np.array_split(np.argsort(index), len(FIELD_CLASSES))
    cube = np.zeros((size, size, len(wavelengths)))
    labels = np.zeros((size, size), dtype=np.uint8)
    row = 0
    while row < size:
        height = int(rng.integers(*FIELD_SIDE))
        col = 0
        while col < size:
            width = int(rng.integers(*FIELD_SIDE))
            rows, cols = slice(row, min(size, row + height)), slice(col, min(size, col + width))
            shape = (rows.stop - rows.start, cols.stop - cols.start)
            k = int(rng.integers(len(FIELD_CLASSES)))
            pixels = canopy[rng.choice(groups[k], shape)]
            fraction = np.clip(rng.uniform(*FIELD_SOIL) + 0.05 * rng.standard_normal(shape), 0, 1)
            background = soil[rng.integers(len(soil))]
            mixed = (1 - fraction[..., None]) * pixels + fraction[..., None] * background
            gain, offset = rng.uniform(*FIELD_GAIN), rng.uniform(-FIELD_OFFSET, FIELD_OFFSET)
            cube[rows, cols] = gain * mixed + offset
            labels[rows.start + 1 : rows.stop - 1, cols.start + 1 : cols.stop - 1] = k + 1
            col += width
        row += height
    cube += FIELD_NOISE * rng.standard_normal(cube.shape)
    return cube.astype(np.float32), labels


def crop_fields_data(cache: Path, *, seed: int = 0) -> BenchData:
    """The crop-fields scene (written into `cache` on first use) as .npy cube + label map."""
    folder = cache / f"crop-fields-v{FIELD_VERSION}-seed{seed}"
    cube_path, labels_path = folder / "cube.npy", folder / "labels.npy"
    if not (folder / _COMPLETE).is_file():
        folder.mkdir(parents=True, exist_ok=True)
        cube, labels = field_scene(load_library(), np.random.default_rng(seed))
        np.save(cube_path, cube)
        np.save(labels_path, labels)
        info = {"seed": seed, "version": FIELD_VERSION, "classes": list(FIELD_CLASSES)}
        (folder / _COMPLETE).write_text(json.dumps(info, indent=2) + "\n")
    return BenchData(
        "crop-fields",
        SCENE_KIND,
        str(cube_path),
        str(FIELD_DESCRIPTIONS),
        str(labels_path),
        FIELD_CLASSES,
    )


def write_real_scene(npz: Path, folder: Path) -> tuple[Path, Path, tuple[str, ...]]:
    """Write a real scene's cube and `labels_pure0p6` map as .npy files; (cube, labels, names)."""
    with np.load(npz) as archive:
        names = tuple(class_name(str(n)) for n in archive["endmember_names"])
        cube_path, labels_path = folder / "cube.npy", folder / "labels.npy"
        if not (folder / _COMPLETE).is_file():
            folder.mkdir(parents=True, exist_ok=True)
            np.save(cube_path, archive["cube"].astype(np.float32))
            np.save(labels_path, archive[REAL_LABELS_KEY].astype(np.uint8))
            info = {"source": str(npz), "labels": REAL_LABELS_KEY, "classes": list(names)}
            (folder / _COMPLETE).write_text(json.dumps(info, indent=2) + "\n")
    return cube_path, labels_path, names


def real_scene_data(name: str, real_dir: Path, cache: Path) -> BenchData:
    """Real scene `name`, copied as .npy into `cache`; FileNotFoundError if its file is absent."""
    npz = real_dir / REAL_SCENES[name]
    if not npz.is_file():
        raise FileNotFoundError(f"{npz} not found")
    cube, labels, names = write_real_scene(npz, cache / name)
    return BenchData(name, SCENE_KIND, str(cube), str(REAL_DESCRIPTIONS), str(labels), names)
