"""Scene maps: per-window prediction against dense (fully convolutional) inference.

    python -m benchmarks.dense_map [--quick] [--repeats N] [--threads N] [--out PATH]

For the paper's 3D-CNN (paper pools, C = 30 PCA components, K = 8 classes) with 32 x 32 and
15 x 15 windows: pixels/s of the per-window path (windows cut around every pixel, batches of
256 through the model, as `predict_probabilities` does; cutting not timed) on a few thousand
pixels, and of `dense_probabilities` on a whole scene (one tile), best of `--repeats`, the two
interleaved repeat by repeat because the machine is shared. Beside the measured ratio: its
FLOP-count limit, multiply-adds per pixel of the per-window path over the dense path's, both
asymptotically (no halo) and for the benchmarked scene (with its halo and the padding of each
pooling phase grid). Results go to benchmarks/results/dense_map.json (with --quick, only to
`--out` when given).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from s3fn.data.windows import WindowCutter
from s3fn.evaluate.predict import predict_probabilities
from s3fn.inference.dense import dense_probabilities
from s3fn.models import SpectralSpatialCNN

RESULTS_FILE = Path(__file__).parent / "results" / "dense_map.json"
COMPONENTS, CLASSES, BATCH = 30, 8, 256
# window: (per-window pixels, dense scene side), full and --quick, and the target ratio
CASES = {
    32: {"full": (1024, 256), "quick": (256, 96), "target": 50.0},
    15: {"full": (8192, 256), "quick": (2048, 96), "target": 4.0},
}


def cpu_name() -> str:
    """The CPU's model name from /proc/cpuinfo, else platform.processor()."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def head_macs(model: SpectralSpatialCNN) -> int:
    """Multiply-adds of Dense(128) -> Dense(64) -> Dense(K) and the spectral branch, per pixel."""
    head = model.classifier
    macs = head[1].in_features * head[1].out_features + head[3].in_features * head[3].out_features
    if model.spectral is not None:
        macs += model.spectral.in_features * model.spectral.out_features
    return macs


def per_window_macs(model: SpectralSpatialCNN) -> int:
    """Multiply-adds of the conv and dense layers for one window."""
    size = [model.in_bands, *model.window]
    macs = 0
    for block in model.blocks:
        taps = block.in_channels * int(np.prod(block.kernel_size))
        size = [s - k + 1 for s, k in zip(size, block.kernel_size, strict=True)]
        macs += block.out_channels * taps * int(np.prod(size))
        if block.pool is not None:
            size = [s // 2 for s in size]
    linear = model.feature[1]
    return macs + linear.in_features * linear.out_features + head_macs(model)


def dense_macs(
    model: SpectralSpatialCNN, rows: int | None = None, cols: int | None = None
) -> float:
    """Multiply-adds per output pixel of the dense path: asymptotically (no halo) without
    `rows` / `cols`, else for one rows x cols tile, halo and phase padding included."""
    depth = model.in_bands
    extent = list(model.window)
    step = 2 ** sum(pool is not None for pool in model.pools)
    count = [-(-n // step) * step for n in (rows, cols)] if rows is not None else None
    phases, macs = 1, 0.0
    for block in model.blocks:
        kt, kh, kw = block.kernel_size
        depth -= kt - 1
        extent = [extent[0] - kh + 1, extent[1] - kw + 1]
        per_position = block.out_channels * block.in_channels * kt * kh * kw * depth
        if count is None:
            macs += per_position
        else:
            grid = [n + e - 1 for n, e in zip(count, extent, strict=True)]
            macs += per_position * phases * grid[0] * grid[1]
        if block.pool is not None:
            depth //= 2
            extent = [e // 2 for e in extent]
            phases *= 4
            count = [n // 2 for n in count] if count is not None else None
    linear = model.feature[1]
    per_position = linear.in_features * linear.out_features
    if count is None:
        return macs + per_position + head_macs(model)
    macs += per_position * phases * count[0] * count[1]
    return macs / (rows * cols) + head_macs(model)


def best_of(steps: dict[str, Callable[[], Any]], repeats: int) -> dict[str, float]:
    """Best wall time in seconds of each step, the steps interleaved repeat by repeat."""
    for step in steps.values():
        step()  # warm-up: thread pool, oneDNN primitives, page faults
    times: dict[str, list[float]] = {name: [] for name in steps}
    for _ in range(repeats):
        for name, step in steps.items():
            start = time.perf_counter()
            step()
            times[name].append(time.perf_counter() - start)
    return {name: min(t) for name, t in times.items()}


def run_case(window: int, quick: bool, repeats: int) -> dict[str, Any]:
    """Pixels/s both ways for one window size, with the FLOP-count limits of the ratio."""
    case = CASES[window]
    n_windows, side = case["quick" if quick else "full"]
    torch.manual_seed(0)
    model = SpectralSpatialCNN(COMPONENTS, CLASSES, window=window).eval()
    rng = np.random.default_rng(0)
    image = rng.standard_normal((side, side, COMPONENTS)).astype(np.float32)
    pixels = np.argwhere(np.ones((side, side), dtype=bool))[:n_windows]
    windows = torch.from_numpy(WindowCutter(image, window).at_centres(pixels))
    pad = ((0, 0), (window // 2, window - window // 2 - 1), (window // 2, window - window // 2 - 1))
    planes = torch.from_numpy(np.pad(np.moveaxis(image, 2, 0), pad, mode="reflect"))
    seconds = best_of(
        {
            "per_window": lambda: predict_probabilities(model, windows, batch_size=BATCH),
            "dense": lambda: dense_probabilities(model, planes, window),
        },
        repeats,
    )
    per_window = n_windows / seconds["per_window"]
    dense = side * side / seconds["dense"]
    macs = per_window_macs(model)
    return {
        "window": window,
        "per_window_pixels": n_windows,
        "dense_scene": [side, side],
        "per_window_pixels_per_s": round(per_window, 1),
        "dense_pixels_per_s": round(dense, 1),
        "ratio": round(dense / per_window, 2),
        "limit": round(macs / dense_macs(model), 1),
        "limit_this_scene": round(macs / dense_macs(model, side, side), 1),
        "target": case["target"],
        "per_window_macs_per_pixel": macs,
        "dense_macs_per_pixel": dense_macs(model),
        "per_window_gflops": round(2 * macs * per_window / 1e9, 1),
        "dense_gflops": round(2 * dense_macs(model, side, side) * dense / 1e9, 1),
    }


def main(argv: list[str] | None = None) -> None:
    """Measure both cases, print a table, write the JSON."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="smaller scenes (~30 s)")
    parser.add_argument("--repeats", type=int, default=None, help="default 3 (2 with --quick)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: all)")
    parser.add_argument("--out", type=Path, default=None, help=f"default {RESULTS_FILE}")
    args = parser.parse_args(argv)
    repeats = args.repeats or (2 if args.quick else 3)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    load_before = os.getloadavg()[0]
    cases = [run_case(window, args.quick, repeats) for window in CASES]
    columns = ("window", "per-window px/s", "dense px/s", "ratio", "limit", "limit here")
    print(" ".join(f"{name:>15}" for name in (*columns, "target")))
    keys = ("per_window_pixels_per_s", "dense_pixels_per_s", "ratio", "limit", "limit_this_scene")
    for c in cases:
        print(
            " ".join(
                [f"{c['window']:>15}", *(f"{c[k]:>15.1f}" for k in keys), f"{c['target']:>15}"]
            )
        )
    result = {
        "cpu": cpu_name(),
        "logical_cores": os.cpu_count(),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "repeats": repeats,
        "model": f"SpectralSpatialCNN paper pools, C={COMPONENTS}, K={CLASSES}",
        "load_average_1min_before_after": [round(load_before, 2), round(os.getloadavg()[0], 2)],
        "cases": cases,
    }
    out = args.out or (None if args.quick else RESULTS_FILE)
    if out is None:
        return
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
