"""Calibration of the built-in "materials" dataset: how well a plain 3D-CNN does on it.

A small 3D-CNN (plain PyTorch) is trained on 5 images per class and tested on the held-out
images with majority voting over windows, for a few split seeds. The dataset is meant to be
clearly below 100 % image-level accuracy, so that methods can be told apart.

    python -m benchmarks.calibrate_builtin [--seeds 0 1 2] [--epochs 40] [--threads 1]

Writes benchmarks/results/calibrate_builtin.json.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

from s3fn.data import builtin, prepare_object_stores, split_objects

RESULTS = Path(__file__).parent / "results" / "calibrate_builtin.json"


def plain_3d_cnn(n_components: int, size: int, n_classes: int) -> nn.Module:
    """A small spectral-spatial 3D-CNN in the shape of the paper's backbone, fewer channels."""
    features = nn.Sequential(
        nn.Conv3d(1, 8, 3),
        nn.ReLU(),
        nn.AvgPool3d(2),
        nn.Conv3d(8, 16, 3),
        nn.ReLU(),
        nn.AvgPool3d(2),
        nn.Flatten(),
    )
    n_features = features(torch.zeros(1, 1, n_components, size, size)).shape[1]
    return nn.Sequential(
        features, nn.Linear(n_features, 64), nn.ReLU(), nn.Dropout(0.5), nn.Linear(64, n_classes)
    )


def run(seed: int, args: argparse.Namespace, dataset: object, workdir: Path) -> dict:
    """Train on 5 images per class of split `seed`; return window and image accuracies."""
    split = split_objects(dataset.labels, dataset.class_names, train=5, val=0, seed=seed)
    stores = prepare_object_stores(
        dataset,
        split,
        workdir / f"seed{seed}",
        windows_per_image=args.windows,
        size=args.size,
        seed=seed,
    )
    train, test = stores["train"], stores["test"]
    x, y = train.read(np.arange(len(train)))
    torch.manual_seed(seed)
    model = plain_3d_cnn(x.shape[1], args.size, len(dataset.class_names))
    optimiser = torch.optim.Adam(model.parameters(), lr=1e-3, weight_decay=1e-4)
    for _ in range(args.epochs):
        model.train()
        for batch in torch.randperm(len(x)).split(32):
            scale = torch.empty(len(batch), 1, 1, 1).uniform_(0.9, 1.1)
            loss = nn.functional.cross_entropy(model((x[batch] * scale)[:, None]), y[batch])
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
    model.eval()
    xt, yt = test.read(np.arange(len(test)))
    with torch.no_grad():
        predicted = torch.cat([model(b[:, None]).argmax(1) for b in xt.split(256)]).numpy()
    votes = [
        np.bincount(predicted[test.image_index == i], minlength=len(dataset.class_names)).argmax()
        for i in range(len(test.image_ids))
    ]
    truth = [int(test.labels[test.image_index == i][0]) for i in range(len(test.image_ids))]
    return {
        "seed": seed,
        "n_components": int(x.shape[1]),
        "window_accuracy": float((predicted == yt.numpy()).mean()),
        "image_accuracy": float(np.mean(np.array(votes) == np.array(truth))),
        "test_images": len(truth),
    }


def main() -> None:
    """Run the calibration and write its JSON result."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument("--windows", type=int, default=40, help="windows per image")
    parser.add_argument("--size", type=int, default=16, help="window side in pixels")
    parser.add_argument("--cache-dir", default=None)
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch threads (1: robust on a "
        "shared machine, where 2 threads slow down when another process runs)",
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    start = time.perf_counter()
    dataset = builtin.load("materials", seed=0, cache_dir=args.cache_dir)
    with tempfile.TemporaryDirectory() as tmp:
        runs = [run(seed, args, dataset, Path(tmp)) for seed in args.seeds]
    images = np.array([r["image_accuracy"] for r in runs])
    windows = np.array([r["window_accuracy"] for r in runs])
    result = {
        "dataset": "materials (seed 0)",
        "protocol": f"5 train images per class, {args.windows} windows of {args.size}x{args.size} "
        f"per image, PCA 0.999, {args.epochs} epochs, majority vote over test windows",
        "runs": runs,
        "image_accuracy_mean": float(images.mean()),
        "image_accuracy_std": float(images.std()),
        "window_accuracy_mean": float(windows.mean()),
        "window_accuracy_std": float(windows.std()),
        "seconds": round(time.perf_counter() - start, 1),
        "torch_threads": args.threads,
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
