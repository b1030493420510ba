"""Synthetic images made from measured spectra: objects on a zero background, and a scene.

Each pixel mixes a few spectra of its material (within-class variability) and, at a small
fraction, a spectrum of a neighbouring material; the image is then shaded (object relief, light
direction, brightness), textured, blurred by the sensor and given band-dependent noise.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from s3fn.data.spectral_library import MATERIALS, SpectralLibrary

# The materials each class is mixed with at small fractions (and most easily confused with).
NEIGHBOURS: dict[str, tuple[str, ...]] = {
    "soil": ("plant litter", "concrete"),
    "green vegetation": ("plant litter", "soil"),
    "asphalt": ("composition shingle", "concrete"),
    "composition shingle": ("asphalt", "soil"),
    "concrete": ("paint", "asphalt"),
    "paint": ("concrete", "wood"),
    "wood": ("plant litter", "soil"),
    "plant litter": ("wood", "soil", "green vegetation"),
}
# Centres (nm) of the atmospheric water bands next to which a sensor's signal is weak.
_WATER_BANDS = (1350.0, 1460.0, 1790.0, 1960.0)


@dataclass(frozen=True)
class Appearance:
    """The knobs of the generator; the defaults make the calibrated built-in dataset."""

    endmembers: int = 3
    contamination: tuple[float, float] = (0.05, 0.3)
    brightness: tuple[float, float] = (0.7, 1.2)
    spectral_tilt: float = 0.05
    texture: float = 0.06
    noise: float = 0.002
    shot_noise: float = 0.005
    blur: float = 0.6


def object_image(
    library: SpectralLibrary,
    material: str,
    size: int,
    rng: np.random.Generator,
    look: Appearance = Appearance(),
) -> np.ndarray:
    """A `size` x `size` x B reflectance image of one irregular `material` object on zeros."""
    coverage = _blob(size, rng)
    inside = coverage > 0
    shade = _shading(inside, rng) * rng.uniform(*look.brightness)
    pixels = _pixels(library, material, inside.shape, rng, look)
    image = _sensor(pixels * (shade * coverage)[..., None], library.wavelengths, rng, look)
    image[~inside] = 0.0
    return image


def scene_image(
    library: SpectralLibrary, size: int, rng: np.random.Generator, look: Appearance = Appearance()
) -> tuple[np.ndarray, np.ndarray]:
    """A `size` x `size` x B scene of material fields crossed by roads, and its label map.

    Labels are 1..8 in `MATERIALS` order; 0 marks unlabelled surfaces (other measured materials)
    and the mixed pixels on the borders between fields.
    """
    names = list(MATERIALS)
    n_cells = max(5 * (len(names) + 1), size * size // 400)
    seeds = rng.uniform(0, size, (n_cells, 2))
    rows, cols = np.mgrid[0:size, 0:size]
    distance = (rows[..., None] - seeds[:, 0]) ** 2 + (cols[..., None] - seeds[:, 1]) ** 2
    regions = np.argmin(distance, axis=-1)
    region_class = list(rng.permutation(np.resize(np.arange(len(names) + 1), n_cells)))
    for _ in range(2):
        regions[_road(size, rng)] = len(region_class)
        region_class.append(names.index("asphalt") + 1)
    image = np.zeros((size, size, len(library.wavelengths)))
    for region, value in enumerate(region_class):
        where = regions == region
        found = np.argwhere(where)
        if not len(found):
            continue
        (r0, c0), (r1, c1) = found.min(0), found.max(0) + 1
        box = where[r0:r1, c0:c1]
        material = names[value - 1] if value else None
        pixels = _pixels(library, material, box.shape, rng, look) * rng.uniform(*look.brightness)
        image[r0:r1, c0:c1][box] = pixels[box]
    image *= (1.0 + 0.1 * _field((size, size), size / 6, rng))[..., None]
    image = _sensor(image, library.wavelengths, rng, look)
    labels = np.asarray(region_class)[regions]
    labels[ndimage.grey_dilation(regions, size=3) != ndimage.grey_erosion(regions, size=3)] = 0
    return image, labels


def _pixels(
    library: SpectralLibrary,
    material: str | None,
    shape: tuple[int, int],
    rng: np.random.Generator,
    look: Appearance,
) -> np.ndarray:
    """Textured mixtures of `material` spectra (None: unlabelled surfaces), H x W x B."""
    pool = library.unlabelled if material is None else library.spectra[material]
    picked = pool[rng.choice(len(pool), size=look.endmembers, replace=False)]
    fields = np.stack([_field(shape, rng.uniform(2, 6), rng) for _ in picked], axis=-1)
    fields[..., 0] += rng.uniform(0.5, 1.5)  # a dominant spectrum, varied by the others
    weights = np.exp(fields * rng.uniform(1, 3))
    mixture = (weights / weights.sum(-1, keepdims=True)) @ picked
    if material is not None:
        other = library.spectra[NEIGHBOURS[material][rng.integers(len(NEIGHBOURS[material]))]]
        fraction = rng.uniform(*look.contamination) / (
            1 + np.exp(-2 * _field(shape, rng.uniform(3, 8), rng))
        )
        mixture += fraction[..., None] * (other[rng.integers(len(other))] - mixture)
    x = np.linspace(-1, 1, mixture.shape[-1])
    a1, a2 = rng.standard_normal(2)
    tilt = 1 + look.spectral_tilt * (a1 * x + a2 * (x * x - 1 / 3))
    texture = 1 + look.texture * _field(shape, 0.8, rng)
    return mixture * tilt * texture[..., None]


def _field(shape: tuple[int, int], sigma: float, rng: np.random.Generator) -> np.ndarray:
    """A smooth random field with zero mean and unit standard deviation."""
    field = ndimage.gaussian_filter(rng.standard_normal(shape), sigma, mode="wrap")
    return (field - field.mean()) / (field.std() + 1e-12)


def _blob(size: int, rng: np.random.Generator) -> np.ndarray:
    """Pixel coverage (0-1) of an irregular, rounded-rectangle object filling most of the image."""
    centre = size / 2 + rng.uniform(-1, 1, 2)
    rows, cols = np.mgrid[0:size, 0:size] + 0.5 - centre[:, None, None]
    angle = rng.uniform(0, np.pi)
    x = cols * np.cos(angle) + rows * np.sin(angle)
    y = -cols * np.sin(angle) + rows * np.cos(angle)
    half = size / 2 - 1.5
    a, b = half * rng.uniform(0.9, 1.0), half * rng.uniform(0.82, 1.0)
    power = rng.uniform(3.0, 5.0)
    radius = (np.abs(x / a) ** power + np.abs(y / b) ** power) ** (1 / power)
    theta = np.arctan2(y, x)
    boundary = 1 + sum(
        rng.uniform(0, 0.04) * np.cos(k * theta + rng.uniform(0, 2 * np.pi)) for k in range(2, 6)
    )
    coverage = np.clip((boundary - radius) * min(a, b) + 0.5, 0, 1)
    coverage[coverage < 0.15] = 0
    return coverage


def _shading(inside: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Lambertian shading of a dome-shaped object under a random light; 1 on flat ground."""
    depth = ndimage.distance_transform_edt(inside)
    height = rng.uniform(2, 8) * np.sqrt(depth / max(depth.max(), 1.0))
    gy, gx = np.gradient(ndimage.gaussian_filter(height, 1.0))
    azimuth, elevation = rng.uniform(0, 2 * np.pi), np.radians(rng.uniform(35, 70))
    light = np.array(
        [
            np.cos(elevation) * np.cos(azimuth),
            np.cos(elevation) * np.sin(azimuth),
            np.sin(elevation),
        ]
    )
    lambert = np.clip(
        (-gx * light[0] - gy * light[1] + light[2]) / np.sqrt(gx**2 + gy**2 + 1), 0, 1
    )
    return 0.25 + 0.75 * lambert / light[2]


def _road(size: int, rng: np.random.Generator) -> np.ndarray:
    """A straight road 3-5 pixels wide across the scene."""
    rows, cols = np.mgrid[0:size, 0:size]
    angle = rng.uniform(0, np.pi)
    point = rng.uniform(0.2 * size, 0.8 * size, 2)
    distance = np.abs((rows - point[0]) * np.cos(angle) - (cols - point[1]) * np.sin(angle))
    return distance < rng.uniform(1.5, 2.5)


def _sensor(
    image: np.ndarray, wavelengths: np.ndarray, rng: np.random.Generator, look: Appearance
) -> np.ndarray:
    """Blur by the sensor's point spread function, then add signal- and band-dependent noise."""
    blurred = ndimage.gaussian_filter(image, (look.blur, look.blur, 0))
    weak = 1 + 2 * np.exp(-(wavelengths - 400) / 50) + 3 * np.exp((wavelengths - 2450) / 120)
    weak += sum(1.5 * np.exp(-(((wavelengths - c) / 20) ** 2)) for c in _WATER_BANDS)
    sigma = look.noise * weak + look.shot_noise * np.abs(blurred)
    return blurred + sigma * rng.standard_normal(blurred.shape)
