"""Where a whole `s3fn train` run spends its time, against the bare fused training step.

    python -m benchmarks.train_profile [--datasets first-run materials-scene jasper-ridge]
                                       [--epochs 3] [--semantic-epochs 10] [--no-profile]

For each dataset, in one process:

1. `s3fn train` (its own entry point, default preset, `--epochs` / `--semantic-epochs` capped so
   that every epoch runs) is timed: training windows per second of the CNN stage's whole wall
   time (loader, augmentation, steps, validation, checkpoints), and the frozen-backbone
   stage's wall time against one CNN epoch.
2. The bare fused training step of the same network (same window, bands, batch and optimiser:
   forward, backward and Adam on one batch already in memory) is timed right after; the ratio
   of (1) to (2) is the issue's end-to-end target (>= 0.8).
3. Unless `--no-profile`, a second, shorter run under `torch.profiler` splits the time by phase
   (the `s3fn.*` labels of `s3fn.train.fit`, the DataLoader, the optimiser) and lists the ops
   with the most self time.

Results go to benchmarks/results/train_profile-<machine>.json and a summary to stdout.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from torch.profiler import ProfilerActivity, profile

from benchmarks.accuracy_data import DEFAULT_REAL_DIR, BenchData, builtin_data, real_scene_data
from benchmarks.first_run import first_run_data
from benchmarks.run import machine_info, machine_name
from s3fn.cache_dir import cache_root
from s3fn.config import TrainConfig
from s3fn.inference import Classifier
from s3fn.progress import Progress
from s3fn.train.presets import get_preset
from s3fn.train.run import train_run
from s3fn.train.stages import plan_stage

RESULTS = Path(__file__).parent / "results"
DATASETS = ("first-run", "materials-scene", "jasper-ridge")
PHASES = (
    "s3fn.forward",
    "s3fn.backward",
    "s3fn.augment",
    "s3fn.validate",
    "s3fn.checkpoint",
    "s3fn.frozen_features",
)
BARE_STEPS = 20


def bench_data(name: str, cache: Path) -> BenchData:
    """The dataset `name`: the first-run objects, a built-in set or a real scene."""
    if name == "first-run":
        return BenchData(name, "objects", str(first_run_data()), "bundled:materials")
    if name.startswith("materials"):
        return builtin_data(name)
    return real_scene_data(name, DEFAULT_REAL_DIR, cache)


def run_train(data: BenchData, out: Path, epochs: int, semantic_epochs: int) -> dict[str, Any]:
    """`s3fn train` with the default preset and capped epochs; its metrics.json."""
    config = TrainConfig(
        **data.config_fields(),
        epochs=epochs,
        semantic_epochs=semantic_epochs,
        patience=epochs + semantic_epochs,
    )
    train_run(config, out, resume=False, progress=Progress(quiet=True))
    return json.loads((out / "metrics.json").read_text())


def bare_step_rate(bundle: Path) -> dict[str, Any]:
    """Windows/s of the bare fused CNN-stage step of the bundle's network, default options."""
    classifier = Classifier.load(bundle)
    network = classifier.model
    options = get_preset("default").cnn
    plan = plan_stage(network, "cnn", label_smoothing=options.label_smoothing)
    plan.module.train()
    optimizer = options.make_optimizer(plan.named_params)
    backbone = plan.module
    shape = (options.batch_size, backbone.in_bands, *backbone.window)
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(shape, generator=generator)
    y = torch.randint(0, backbone.n_classes, (shape[0],), generator=generator)
    times = []
    for step in range(BARE_STEPS + 2):
        start = time.perf_counter()
        optimizer.zero_grad(set_to_none=True)
        plan.loss(x, y).backward()
        optimizer.step()
        if step >= 2:
            times.append(time.perf_counter() - start)
    median = statistics.median(times)
    return {
        "shape": list(shape),
        "step_ms": round(1e3 * median, 2),
        "windows_per_s": shape[0] / median,
    }


def profile_phases(data: BenchData, out: Path) -> dict[str, Any]:
    """A short run (2 + 2 epochs) under torch.profiler: seconds per phase, top ops."""
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        start = time.perf_counter()
        metrics = run_train(data, out, 2, 2)
        wall = time.perf_counter() - start
    events = prof.key_averages()
    phases = {e.key: e.cpu_time_total / 1e6 for e in events if e.key in PHASES}
    for e in events:
        if e.key.startswith("enumerate(DataLoader)"):
            phases["dataloader"] = phases.get("dataloader", 0.0) + e.cpu_time_total / 1e6
        elif e.key.startswith("Optimizer.step"):
            phases["optimizer.step"] = phases.get("optimizer.step", 0.0) + e.cpu_time_total / 1e6
        elif e.key.startswith("Optimizer.zero_grad"):
            phases["optimizer.zero_grad"] = e.cpu_time_total / 1e6
    ops = sorted(
        (e for e in events if not e.key.startswith(("s3fn.", "enumerate", "Optimizer"))),
        key=lambda e: e.self_cpu_time_total,
        reverse=True,
    )
    return {
        "wall_seconds": round(wall, 2),
        "stage_seconds": metrics.get("stage_seconds"),
        "phase_seconds": {k: round(v, 3) for k, v in sorted(phases.items())},
        "top_self_ops": [
            {"op": e.key, "self_seconds": round(e.self_cpu_time_total / 1e6, 3), "calls": e.count}
            for e in ops[:15]
        ],
    }


def measure(name: str, cache: Path, args: argparse.Namespace) -> dict[str, Any]:
    """One dataset: the timed run, the bare step, and (optionally) the profile."""
    data = bench_data(name, cache)
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "run"
        metrics = run_train(data, out, args.epochs, args.semantic_epochs)
        bare = bare_step_rate(out / "bundle")
        profiled = None if args.no_profile else profile_phases(data, Path(tmp) / "profiled")
    cnn, semantic = metrics["histories"]["cnn"], metrics["histories"].get("semantic", [])
    stage = metrics["stage_seconds"]
    windows = sum(r["windows"] for r in cnn)
    end_to_end = windows / stage["cnn"]
    cnn_epoch = stage["cnn"] / len(cnn)
    record = {
        "dataset": name,
        "train_windows_per_epoch": cnn[0]["windows"],
        "cnn_epochs": len(cnn),
        "cnn_stage_seconds": stage["cnn"],
        "cnn_epoch_seconds": round(cnn_epoch, 3),
        "end_to_end_windows_per_s": round(end_to_end, 1),
        "train_loop_windows_per_s": round(windows / sum(r["train_seconds"] for r in cnn), 1),
        "bare_step": {**bare, "windows_per_s": round(bare["windows_per_s"], 1)},
        "end_to_end_over_bare": round(end_to_end / bare["windows_per_s"], 3),
        "semantic_epochs": len(semantic),
        "semantic_stage_seconds": stage.get("semantic"),
        "semantic_stage_over_cnn_epoch": (
            round(stage["semantic"] / cnn_epoch, 3) if "semantic" in stage else None
        ),
        "cnn_epoch_seconds_each": [round(r["seconds"], 3) for r in cnn],
        "train_seconds": metrics["train_seconds"],
    }
    if profiled is not None:
        record["profile"] = profiled
    return record


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", nargs="+", default=list(DATASETS), choices=DATASETS)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--semantic-epochs", type=int, default=10)
    parser.add_argument("--no-profile", action="store_true")
    parser.add_argument("--cache", type=Path, default=cache_root() / "bench")
    args = parser.parse_args(argv)
    records = []
    for name in args.datasets:
        record = measure(name, args.cache, args)
        records.append(record)
        print(
            f"{name}: {record['train_windows_per_epoch']} windows/epoch, end-to-end "
            f"{record['end_to_end_windows_per_s']} w/s, bare step "
            f"{record['bare_step']['windows_per_s']} w/s, ratio {record['end_to_end_over_bare']}"
            f" (target 0.8); {record['semantic_epochs']} frozen epochs = "
            f"{record['semantic_stage_over_cnn_epoch']} CNN epochs (target < 1)",
            flush=True,
        )
        if "profile" in record:
            print(json.dumps(record["profile"]["phase_seconds"], indent=1), flush=True)
    info = machine_info(torch.device("cpu"))
    result = {
        "machine": info,
        "load_average_1min": round(os.getloadavg()[0], 2),
        "targets": {"end_to_end_over_bare": 0.8, "semantic_stage_over_cnn_epoch": 1.0},
        "records": records,
    }
    if argv is None:
        out = RESULTS / f"train_profile-{machine_name(info)}.json"
        out.write_text(json.dumps(result, indent=1) + "\n")
    return result


if __name__ == "__main__":
    main()
