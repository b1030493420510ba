"""Throughput of the data pipeline: window extraction + preprocessing, the store, PCA fitting.

    python -m benchmarks.data_throughput [--repeats 3]
    OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1 python -m benchmarks.data_throughput

The headline figure is object-level extraction + preprocessing of 32x32 windows with 30 PCA
components (200-band images, 20 windows per image, as in the paper's protocol). Results, with the
CPU, core count and library versions, go to benchmarks/results/data_throughput.json, one entry
per BLAS thread count (on a shared machine, one BLAS thread is the robust setting: two threads
slow down several-fold when another process holds a core).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import h5py
import numpy as np
import scipy
import torch
from scipy import ndimage
from torch.utils.data import DataLoader

from s3fn.data import (
    Cube,
    Preprocessor,
    SceneDataset,
    WindowStore,
    cut_object_windows,
    iter_scene_windows,
    write_windows,
)
from s3fn.data.pipeline import WindowBatch

RESULTS = Path(__file__).parent / "results" / "data_throughput.json"
BANDS, COMPONENTS, WINDOW = 200, 30, 32


def best_rate(work: Callable[[], int], repeats: int) -> float:
    """Items per second of `work()` (which returns how many items it made), best of `repeats`."""
    work()  # warm-up: BLAS threads, page faults
    rates = []
    for _ in range(repeats):
        start = time.perf_counter()
        count = work()
        rates.append(count / (time.perf_counter() - start))
    return max(rates)


def object_images(
    n: int, size: int, rng: np.random.Generator
) -> list[tuple[np.ndarray, np.ndarray]]:
    """`n` smooth `size`x`size`x200 cubes, each with a disc-shaped object mask, background zero."""
    rows, cols = np.mgrid[0:size, 0:size] - (size - 1) / 2
    mask = rows**2 + cols**2 <= (0.46 * size) ** 2
    images = []
    for _ in range(n):
        cube = ndimage.gaussian_filter(rng.random((size, size, BANDS), dtype=np.float32), (2, 2, 4))
        images.append((cube * mask[..., None], mask))
    return images


def object_extraction(images: list, fitted: Preprocessor, per_image: int, repeats: int) -> float:
    """Windows/s of cut_object_windows (transform once per image, cut windows) over `images`."""
    rng = np.random.default_rng(0)

    def work() -> int:
        return sum(
            len(cut_object_windows(cube, mask, fitted, per_image, WINDOW, rng)[0])
            for cube, mask in images
        )

    return best_rate(work, repeats)


def scene_extraction(fitted: Preprocessor, repeats: int) -> tuple[float, int]:
    """Windows/s of windows centred on 10,000 pixels of a 145x145x200 (Indian Pines-sized) scene."""
    rng = np.random.default_rng(1)
    data = ndimage.gaussian_filter(rng.random((145, 145, BANDS), dtype=np.float32), (2, 2, 4))
    labels = np.zeros((145, 145), np.int64)
    labels.ravel()[rng.choice(145 * 145, 10000, replace=False)] = 1
    scene = SceneDataset(Cube(data), labels, ["a"])
    pixels = np.argwhere(labels > 0)

    def work() -> int:
        return sum(len(b.windows) for b in iter_scene_windows(scene, pixels, fitted, size=WINDOW))

    return best_rate(work, repeats), len(pixels)


def store_rates(images: list, fitted: Preprocessor, repeats: int) -> dict[str, float]:
    """Windows/s writing a store (lzf) and reading it back through a DataLoader."""
    rng = np.random.default_rng(2)
    batches = [
        WindowBatch(
            *cut_object_windows(c, m, fitted, 50, WINDOW, rng)[:1],
            0,
            f"i{i}",
            np.zeros((50, 2), np.int64),
        )
        for i, (c, m) in enumerate(images)
    ]
    n = sum(len(b.windows) for b in batches)
    rates: dict[str, float] = {"windows": n}
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "train.h5"

        def write() -> int:
            write_windows(
                path,
                iter(batches),
                class_names=["a"],
                kind="object",
                split="train",
                preprocessor=fitted,
            )
            return n

        rates["write_windows_per_s"] = best_rate(write, repeats)
        rates["file_mb"] = round(path.stat().st_size / 2**20, 1)
        for workers in (0, 2):
            loader = DataLoader(WindowStore(path), batch_size=64, shuffle=True, num_workers=workers)
            rates[f"read_windows_per_s_workers{workers}"] = best_rate(
                lambda loader=loader: sum(len(x) for x, _ in loader), repeats
            )
    return rates


def pca_fit_seconds(n_pixels: int, bands: int) -> float:
    """Seconds to fit z-score + PCA on `n_pixels` x `bands`, streamed in 65,536-pixel chunks."""
    chunk = np.random.default_rng(3).random((65536, bands), dtype=np.float32)
    chunks = n_pixels // len(chunk)
    start = time.perf_counter()
    Preprocessor.fit((chunk for _ in range(chunks)), variance=0.999)
    return time.perf_counter() - start


def cpu_name() -> str:
    """The CPU model from /proc/cpuinfo (Linux), else what platform reports."""
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def main() -> None:
    """Run every measurement and write the JSON result."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    load_before = os.getloadavg()[0]
    rng = np.random.default_rng(0)
    images = object_images(32, 96, rng)
    fitted = Preprocessor.fit([c[m] for c, m in images[:8]], n_components=COMPONENTS)
    scene_rate, scene_windows = scene_extraction(fitted, args.repeats)
    result = {
        "cpu": cpu_name(),
        "logical_cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "versions": {
            "torch": torch.__version__,
            "numpy": np.__version__,
            "scipy": scipy.__version__,
            "h5py": h5py.__version__,
        },
        "window": [COMPONENTS, WINDOW, WINDOW],
        "input_bands": BANDS,
        "object_extraction_windows_per_s": {
            f"{n}_per_image": round(object_extraction(images, fitted, n, args.repeats))
            for n in (20, 50)
        },
        "object_images": "32 images of 96x96x200, disc-shaped object covering 66 %",
        "scene_extraction_windows_per_s": round(scene_rate),
        "scene": f"145x145x200, windows centred on {scene_windows} pixels, reflect padding",
        "store": {k: round(v, 1) for k, v in store_rates(images, fitted, args.repeats).items()},
        "pca_fit_seconds_2m_pixels_x_500_bands": round(pca_fit_seconds(2**21, 500), 2),
        "load_average_1min_before_after": [round(load_before, 2), round(os.getloadavg()[0], 2)],
    }
    threads = os.environ.get("OPENBLAS_NUM_THREADS") or str(os.cpu_count())
    result["blas_threads"] = int(threads)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    runs = json.loads(RESULTS.read_text()) if RESULTS.is_file() else {}
    runs[f"blas_threads={threads}"] = result
    RESULTS.write_text(json.dumps(runs, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
