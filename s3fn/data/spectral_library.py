"""The measured spectra behind the built-in dataset: earthlib's library, grouped into materials.

Only earthlib's data files are used (`spectra.sli` through `spectral`, `spectra.csv` through the
csv module); the package itself is located without being imported.
"""

from __future__ import annotations

import csv
import importlib.util
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import numpy as np
import spectral.io.envi as envi

from s3fn.data.cube import wavelengths_to_nm
from s3fn.data.errors import S3FNDataError

# Material classes of the built-in dataset, in label order, and the earthlib LEVEL_3 types
# that make up each of them.
MATERIALS: dict[str, tuple[str, ...]] = {
    "soil": ("soil", "dirt"),
    "green vegetation": ("canopy",),
    "asphalt": ("road", "asphalt", "parking_lot"),
    "composition shingle": ("comp_shingle",),
    "concrete": ("sidewalk", "concrete_tile"),
    "paint": ("paint",),
    "wood": ("wood", "wood_shingle"),
    "plant litter": ("litter", "npv", "bark"),
}
# Measured materials that belong to no class: the unlabelled surroundings of the scene.
UNLABELLED_TYPES = ("sand", "gravel", "metal", "tile", "char", "bridge", "driveway", "manhole")


@dataclass(frozen=True, eq=False)
class SpectralLibrary:
    """Reflectance spectra (n x B, 0-1) per material, and the B band centres in nm."""

    wavelengths: np.ndarray
    spectra: dict[str, np.ndarray]
    unlabelled: np.ndarray


def earthlib_data_dir() -> Path:
    """The folder holding earthlib's `spectra.sli`, `.sli.hdr` and `.csv`."""
    spec = importlib.util.find_spec("earthlib")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            "earthlib is not installed; the built-in dataset is made from its spectral library "
            "(pip install earthlib)"
        )
    return Path(next(iter(spec.submodule_search_locations))) / "data"


@cache
def load_library() -> SpectralLibrary:
    """Read earthlib's spectra and group them by material class (cached per process)."""
    folder = earthlib_data_dir()
    library = envi.open(str(folder / "spectra.sli.hdr"), str(folder / "spectra.sli"))
    spectra = np.asarray(library.spectra, dtype=np.float64)
    with (folder / "spectra.csv").open(newline="") as handle:
        types = np.array([row["LEVEL_3"] for row in csv.DictReader(handle)])
    if len(types) != len(spectra):
        raise S3FNDataError(
            f"{folder / 'spectra.csv'}: {len(types)} rows; expected {len(spectra)} like spectra.sli"
        )
    wavelengths = wavelengths_to_nm(
        np.asarray(library.bands.centers), library.bands.band_unit, str(folder / "spectra.sli")
    )
    grouped = {name: spectra[np.isin(types, members)] for name, members in MATERIALS.items()}
    return SpectralLibrary(wavelengths, grouped, spectra[np.isin(types, UNLABELLED_TYPES)])
