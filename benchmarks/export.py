"""Throughput of a bundle's map model on every path a host can take: predict_map, ONNX Runtime,
the torch.export .pt2, the AOTInductor package from Python, and the C++ host of examples/cpp.

    python -m benchmarks.export [--bundle DIR] [--side N] [--repeats N] [--threads N]
                                [--device cpu|cuda] [--host PATH] [--out PATH]

One side x side scene of random radiometry in the bundle's bands for every path. predict_map
maps it whole (one tile: reflection, preprocessing, the dense pass, argmax). The exported
artefacts get it reflect-padded by the halo as one (1, B, H + h - 1, W + w - 1) tile and give
probabilities. The C++ host maps it from a .npy (reflection, tile copy, argmax), timed by its
own clock: neither the process start nor the package load counts. "network" is the dense pass
alone on the preprocessed planes, which every path must spend. Pixels/s are medians over
--repeats, the Python paths interleaved repeat by repeat because the machine is shared.

Without --bundle it builds the default scene S3FN (30 PCA components of 64 bands, 15 x 15
windows, the paper's pools, spectral branch, 8 classes, 384-d class embeddings) with random
weights: speed does not depend on them. Each export is timed (compile and check included).
A path that cannot run here (no onnxruntime, its CUDA provider, cmake) is recorded with the
reason. Writes benchmarks/results/export-<device>.json and prints a table.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import re
import shutil
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from benchmarks.dense_map import cpu_name
from s3fn.data.preprocess import Preprocessor
from s3fn.inference import Classifier
from s3fn.inference.bundle import locate_bundle
from s3fn.inference.dense import dense_probabilities
from s3fn.inference.export import export, load_aoti, load_exported, sidecar_path
from s3fn.inference.map_model import halo
from s3fn.models import PAPER_POOLS, S3FN, SpectralSpatialCNN
from s3fn.ops import library_path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = Path(__file__).parent / "results"
BANDS, COMPONENTS, CLASSES, WINDOW = 64, 30, 8, 15
PATHS = ("network", "predict_map", "onnx", "pt2", "aoti", "cpp_host")


class Skipped(Exception):
    """A path that cannot run on this machine; the message says why."""


def build_bundle(folder: Path) -> Path:
    """The default-shaped scene S3FN with random weights, preprocessing fitted on noise."""
    rng = np.random.default_rng(0)
    preprocessor = Preprocessor.fit(rng.random((4000, BANDS)), n_components=COMPONENTS)
    torch.manual_seed(0)
    cnn = SpectralSpatialCNN(
        COMPONENTS, CLASSES, window=WINDOW, pools=PAPER_POOLS, spectral_branch=True
    )
    model = S3FN(cnn, torch.randn(CLASSES, 384), temperature="learnable", init_scale=10.0)
    names = [f"class {k}" for k in range(CLASSES)]
    return Classifier(model, preprocessor, names, window=WINDOW, kind="scene").save(folder)


def timed_export(bundle: Path, fmt: str, out: Path, device: str) -> tuple[Path, dict[str, Any]]:
    """Export, returning the artefact and its export time and measured difference."""
    options = {"device": device} if fmt == "aoti" else {}
    start = time.perf_counter()
    export(bundle, fmt, out, **options)
    seconds = time.perf_counter() - start
    facts = json.loads(sidecar_path(out).read_text(encoding="utf-8"))
    return out, {"export_s": round(seconds, 1), "max_abs_diff": facts["max_abs_diff"]}


def onnx_runner(bundle: Path, work: Path, tile: np.ndarray, device: str) -> tuple[Callable, dict]:
    missing = [n for n in ("onnx", "onnxscript", "onnxruntime") if not importlib.util.find_spec(n)]
    if missing:
        raise Skipped(f"not installed: {', '.join(missing)}")
    import onnxruntime

    provider = "CUDAExecutionProvider" if device == "cuda" else "CPUExecutionProvider"
    if provider not in onnxruntime.get_available_providers():
        raise Skipped(f"onnxruntime has no {provider} (onnxruntime-gpu for CUDA)")
    path, facts = timed_export(bundle, "onnx", work / "map.onnx", "cpu")
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = torch.get_num_threads()
    session = onnxruntime.InferenceSession(str(path), options, providers=[provider])
    return lambda: session.run(["probabilities"], {"tile": tile}), facts


def pt2_runner(bundle: Path, work: Path, tile: np.ndarray, device: str) -> tuple[Callable, dict]:
    if device != "cpu":
        raise Skipped("the .pt2 is exported for the CPU")
    path, facts = timed_export(bundle, "pt2", work / "map.pt2", device)
    program = load_exported(path).module()
    x = torch.from_numpy(tile)
    return lambda: program(x), facts


def aoti_runner(bundle: Path, work: Path, tile: np.ndarray, device: str) -> tuple[Callable, dict]:
    path, facts = timed_export(bundle, "aoti", work / "map-aoti.pt2", device)
    compiled = load_aoti(path)
    x = torch.from_numpy(tile).to(device)
    return lambda: compiled(x).cpu(), facts | {"package": str(path)}


def build_host(build: Path) -> Path:
    """examples/cpp built with cmake against this torch; Skipped where that cannot be done."""
    cmake = shutil.which("cmake")
    if cmake is None:
        raise Skipped("cmake not found")
    configure = [cmake, "-S", str(ROOT / "examples" / "cpp"), "-B", str(build)]
    configure += [
        "-DCMAKE_BUILD_TYPE=Release",
        f"-DCMAKE_PREFIX_PATH={torch.utils.cmake_prefix_path}",
    ]
    if shutil.which("ninja"):
        configure += ["-G", "Ninja"]
    for command in (configure, [cmake, "--build", str(build)]):
        done = subprocess.run(command, capture_output=True, text=True)
        if done.returncode != 0:
            lines = (done.stderr or done.stdout).strip().splitlines() or ["?"]
            raise Skipped(f"building examples/cpp failed: {lines[-1]}")
    return build / "s3fn-map-cube"


def run_host(host: Path, package: str, cube: np.ndarray, work: Path, repeats: int) -> float:
    """Seconds per map of `cube` by the C++ host: the median it reports over `repeats`."""
    np.save(work / "cube.npy", cube)
    command = [str(host), package, str(library_path()), str(work / "cube.npy")]
    command += [str(work / "labels.npy"), "--tile", str(cube.shape[0]), "--repeat", str(repeats)]
    env = {**os.environ, "OMP_NUM_THREADS": str(torch.get_num_threads())}
    done = subprocess.run(command, capture_output=True, text=True, env=env)
    if done.returncode != 0:
        raise Skipped(f"s3fn-map-cube failed: {done.stderr.strip()}")
    return float(re.search(r"median ([0-9.e+-]+) s", done.stdout).group(1))


def medians(steps: dict[str, Callable[[], Any]], repeats: int, device: str) -> dict[str, float]:
    """Median wall seconds of each step, the steps interleaved repeat by repeat."""

    def once(step: Callable[[], Any]) -> float:
        start = time.perf_counter()
        step()
        if device == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter() - start

    for step in steps.values():
        once(step)  # warm-up: thread pools, oneDNN primitives, CUDA context and kernels
    times: dict[str, list[float]] = {name: [] for name in steps}
    for _ in range(repeats):
        for name, step in steps.items():
            times[name].append(once(step))
    return {name: statistics.median(t) for name, t in times.items()}


def measure(args: argparse.Namespace, work: Path) -> dict[str, dict[str, Any]]:
    """Every path's seconds per scene (or the reason it was skipped) and its export facts."""
    bundle = locate_bundle(args.bundle)[0] if args.bundle else build_bundle(work / "bundle")
    classifier = Classifier.load(bundle, device=args.device)
    rng = np.random.default_rng(1)
    pre = classifier.preprocessor
    noise = rng.standard_normal((args.side, args.side, pre.n_bands))
    cube = (pre.mean + pre.scale * noise).astype(np.float32)
    top, left, bottom, right = halo(classifier.window)
    padded = np.pad(cube, ((top, bottom), (left, right), (0, 0)), mode="reflect")
    tile = np.ascontiguousarray(padded.transpose(2, 0, 1)[None])
    weights, bias = pre.float32_affine()
    planes = torch.from_numpy(
        np.ascontiguousarray((padded.reshape(-1, pre.n_bands) @ weights + bias).T)
    ).reshape(-1, *padded.shape[:2])
    planes = planes.to(args.device)

    results: dict[str, dict[str, Any]] = {}
    steps: dict[str, Callable[[], Any]] = {
        "network": lambda: dense_probabilities(classifier.model, planes, classifier.window),
        "predict_map": lambda: classifier.predict_map(cube, tile=args.side),
    }
    runners = {"onnx": onnx_runner, "pt2": pt2_runner, "aoti": aoti_runner}
    for name, runner in runners.items():
        try:
            steps[name], results[name] = runner(bundle, work, tile, args.device)
        except Skipped as why:
            results[name] = {"skipped": str(why)}
    with torch.no_grad():
        for name, seconds in medians(steps, args.repeats, args.device).items():
            results.setdefault(name, {})["seconds"] = seconds
    try:
        if "seconds" not in results["aoti"]:
            raise Skipped("no AOTInductor package")
        host = args.host or build_host(work / "host")
        results["cpp_host"] = {
            "seconds": run_host(host, results["aoti"]["package"], cube, work, args.repeats)
        }
    except Skipped as why:
        results["cpp_host"] = {"skipped": str(why)}
    for facts in results.values():
        facts.pop("package", None)
        if "seconds" in facts:
            facts["pixels_per_s"] = round(args.side * args.side / facts["seconds"], 1)
            facts["seconds"] = round(facts["seconds"], 4)
    return results


def table(results: dict[str, dict[str, Any]]) -> str:
    """One line per path: pixels/s, ms per scene, speed against predict_map, export time."""
    base = results["predict_map"]["pixels_per_s"]
    lines = [f"{'path':<12} {'pixels/s':>10} {'ms':>9} {'x map':>6} {'export s':>9}"]
    for name in PATHS:
        facts = results[name]
        if "skipped" in facts:
            lines.append(f"{name:<12} skipped: {facts['skipped']}")
            continue
        export_s = facts.get("export_s", "")
        lines.append(
            f"{name:<12} {facts['pixels_per_s']:>10.0f} {1000 * facts['seconds']:>9.1f} "
            f"{facts['pixels_per_s'] / base:>6.2f} {export_s:>9}"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    """Measure every path, print the table, write the JSON."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bundle", type=Path, help="bundle or run folder (default: build one)")
    parser.add_argument("--side", type=int, default=128, help="scene side; a multiple of 4")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, help="torch / ONNX Runtime / host threads")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--host", type=Path, help="a built s3fn-map-cube (default: build it)")
    parser.add_argument("--out", type=Path, help="default benchmarks/results/export-<device>.json")
    args = parser.parse_args(argv)
    if args.side < 8 or args.side % 4:
        parser.error(f"--side {args.side}: expected a multiple of 4, at least 8")
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="s3fn-export-bench-") as work:
        results = measure(args, Path(work))
    print(table(results))
    result = {
        "cpu": cpu_name(),
        "gpu": torch.cuda.get_device_name(0) if args.device == "cuda" else None,
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "device": args.device,
        "scene": [args.side, args.side],
        "bundle": str(args.bundle) if args.bundle else "built: default scene S3FN, random weights",
        "repeats": args.repeats,
        "load_average_1min_before_after": [round(load_before, 2), round(os.getloadavg()[0], 2)],
        "paths": results,
    }
    out = args.out or RESULTS / f"export-{args.device}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
