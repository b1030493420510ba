"""A scene larger than memory mapped by `s3fn predict --map`: time and peak resident memory.

    python -m benchmarks.large_scene [--size 4000] [--bands 200] [--folder DIR] [--keep]

Writes a generated `size` x `size` x `bands` float32 ENVI cube (4000 x 4000 x 200 is 12.8 GB,
more than half this 24 GB machine), a bundle of the default scene architecture (15 x 15
windows, the paper's pools, 30 components, spectral branch, S3FN head; random weights, since
speed and memory do not depend on them), then runs `python -m s3fn predict BUNDLE cube.hdr
--map` as a child process and records its wall time and peak RSS against the 4 GB bound.
Before that, on a 300 x 300 crop, it checks that the tiled map equals an untiled one label
for label. Results go to benchmarks/results/large_scene.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import spectral.io.envi as envi
import torch

from s3fn.data.preprocess import Preprocessor
from s3fn.inference import Classifier
from s3fn.io import open_source
from s3fn.models import PAPER_POOLS, S3FN, SpectralSpatialCNN

RESULTS_FILE = Path(__file__).parent / "results" / "large_scene.json"
BOUND_GB = 4.0
CLASSES = [f"class {k}" for k in range(8)]
ROWS_PER_WRITE = 200


def write_cube(folder: Path, size: int, bands: int, seed: int = 0) -> Path:
    """An ENVI (BIL) cube of smooth class spectra in square fields, with noise, row by row."""
    rng = np.random.default_rng(seed)
    wavelengths = np.linspace(400, 2500, bands)
    centres = rng.uniform(400, 2500, (len(CLASSES), 3))
    spectra = 0.1 + 0.3 * np.exp(
        -0.5 * ((wavelengths[None, None] - centres[..., None]) / 300.0) ** 2
    ).sum(axis=1)
    fields = rng.integers(0, len(CLASSES), (size // 100 + 1, size // 100 + 1))
    noise = 0.01 * rng.standard_normal((ROWS_PER_WRITE, size, bands)).astype(np.float32)
    header = folder / "scene.hdr"
    metadata = {"wavelength": [f"{w:.2f}" for w in wavelengths], "wavelength units": "nm"}
    image = envi.create_image(
        str(header),
        shape=(size, size, bands),
        dtype=np.float32,
        interleave="bil",
        metadata=metadata,
        force=True,
    )
    out = image.open_memmap(interleave="bip", writable=True)
    for row in range(0, size, ROWS_PER_WRITE):
        rows = min(ROWS_PER_WRITE, size - row)
        labels = fields[(row + np.arange(rows)) // 100][:, np.arange(size) // 100]
        out[row : row + rows] = spectra[labels].astype(np.float32) + noise[:rows]
    out.flush()
    del out
    return header


def write_bundle(folder: Path, cube: Path, components: int = 30) -> Path:
    """A default-shaped scene bundle whose preprocessing is fitted on a sample of the cube."""
    with open_source(cube) as source:
        height, width, bands = source.shape
        sample = source.read(slice(0, min(height, 400)), slice(0, min(width, 400)))
        wavelengths = source.wavelengths
    preprocessor = Preprocessor.fit(
        sample.reshape(-1, bands), n_components=components, wavelengths=wavelengths
    )
    torch.manual_seed(0)
    cnn = SpectralSpatialCNN(
        components, len(CLASSES), window=15, pools=PAPER_POOLS, spectral_branch=True
    )
    model = S3FN(cnn, torch.randn(len(CLASSES), 384), temperature="learnable", init_scale=10.0)
    classifier = Classifier(model, preprocessor, CLASSES, window=15, kind="scene")
    return classifier.save(folder / "bundle")


def check_tiling(bundle: Path, cube: Path) -> dict:
    """The tiled map of a 300 x 300 crop against the same crop mapped as one tile."""
    classifier = Classifier.load(bundle)
    with open_source(cube) as source:
        crop = source.read(slice(0, 300), slice(0, 300))
    untiled = classifier.predict_map(crop, tile=300)
    tiled = classifier.predict_map(crop, tile=64)
    return {"crop": [300, 300], "tile": 64, "labels_differing": int((untiled != tiled).sum())}


# Runs the command from a small process of its own: a child's peak RSS counts the pages it
# shares with its parent between fork and exec, and this benchmark's own process has just
# written the 12.8 GB cube through a memory map.
_MEASURE = (
    "import resource, subprocess, sys, time\n"
    "start = time.perf_counter()\n"
    "code = subprocess.run(sys.argv[1:]).returncode\n"
    "peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss\n"
    "print(code, time.perf_counter() - start, peak)\n"
)


def map_scene(bundle: Path, cube: Path, out: Path) -> dict:
    """Run the command as a child process; its wall time and peak RSS."""
    command = [sys.executable, "-m", "s3fn", "predict", str(bundle), str(cube), "--map"]
    command += ["--out", str(out), "--quiet"]
    result = subprocess.run(
        [sys.executable, "-c", _MEASURE, *command], capture_output=True, text=True
    )
    code, seconds, peak_kb = result.stdout.split()[-3:]
    if int(code) != 0:
        raise RuntimeError(f"s3fn predict failed: {result.stderr[-2000:]}")
    return {"seconds": round(float(seconds), 1), "peak_rss_gb": round(int(peak_kb) / 2**20, 3)}


def main(argv: list[str] | None = None) -> None:
    """Generate, check, map, record."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=4000)
    parser.add_argument("--bands", type=int, default=200)
    parser.add_argument("--folder", type=Path, default=None, help="default: a temporary folder")
    parser.add_argument("--keep", action="store_true", help="keep the generated cube")
    parser.add_argument("--out", type=Path, default=RESULTS_FILE)
    args = parser.parse_args(argv)
    folder = args.folder or Path(tempfile.mkdtemp(prefix="s3fn-large-"))
    folder.mkdir(parents=True, exist_ok=True)
    try:
        start = time.perf_counter()
        cube = write_cube(folder, args.size, args.bands)
        generated = time.perf_counter() - start
        print(
            f"wrote {cube} ({os.path.getsize(cube.with_suffix('.img')) / 1e9:.1f} GB) "
            f"in {generated:.0f} s",
            flush=True,
        )
        bundle = write_bundle(folder, cube)
        tiling = check_tiling(bundle, cube)
        print(f"tiling check: {tiling}", flush=True)
        mapped = map_scene(bundle, cube, folder / "maps")
        pixels = args.size * args.size
        record = {
            "cpu": platform.processor() or platform.machine(),
            "logical_cores": os.cpu_count(),
            "torch": torch.__version__,
            "scene": [args.size, args.size, args.bands],
            "cube_gb": round(os.path.getsize(cube.with_suffix(".img")) / 1e9, 2),
            "model": "S3FN on SpectralSpatialCNN, 15x15 windows, paper pools, 30 components, "
            "spectral branch",
            **mapped,
            "pixels_per_s": round(pixels / mapped["seconds"], 1),
            "bound_gb": BOUND_GB,
            "within_bound": mapped["peak_rss_gb"] < BOUND_GB,
            "tiling_check": tiling,
            "load_average_1min": round(os.getloadavg()[0], 2),
        }
        print(json.dumps(record, indent=1), flush=True)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(record, indent=1) + "\n")
    finally:
        if not args.keep:
            shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
