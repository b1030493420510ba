"""Image-level OA / AA / kappa, mean ± std over seeds: S3FN against its baselines on the
built-in "materials" dataset, with few training images per class.

For each seed: a stratified split by image (seeded), z-score + PCA fitted on the training
pixels, random windows inside each object, then
- S3FN as the paper trains it: stage 1 (the 3D-CNN, cross-entropy) then stage 2 (backbone
  frozen, Dense(d_text)+ReLU head, cosine logits with a fixed scale of 1) against the class
  embeddings of the bundled "materials" descriptions (all-MiniLM-L6-v2, label-token pooling);
- the plain 3D-CNN: the same stage-1 network with its own Dense(64)-Dense(K) classifier
  (so S3FN and the 3D-CNN share their backbone: a paired comparison);
- S3FN with a learnable (CLIP-style) temperature, stage 2 on the same frozen backbone;
- the spectral-mean MLP (the window's mean spectrum -> MLP).
Test images are classified by majority vote over windows drawn inside their object mask
(`Classifier.evaluate`); early stopping watches the validation images only.

    python -m benchmarks.seeds_table [--seeds 0 1 2 3 4] [--train 4] [--val 2] [--window 16]

Writes benchmarks/results/seeds_table.json (or --output) and prints the Markdown table.
"""

from __future__ import annotations

import argparse
import copy
import json
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch

from s3fn.data import builtin, split_objects
from s3fn.data.store import WindowStore
from s3fn.evaluate import markdown_table, run_seeds
from s3fn.inference import Classifier
from s3fn.models import S3FN
from s3fn.semantics import TextEncoder, bundled_descriptions
from s3fn.train import FitOptions, TrainSettings, fit, train_classifier

RESULTS = Path(__file__).parent / "results" / "seeds_table.json"
METHODS = {
    "s3fn": "S3FN (paper: frozen backbone, fixed scale 1)",
    "s3fn-learnable": "S3FN (learnable temperature, init 10)",
    "cnn": "3D-CNN (stage 1 alone)",
    "spectral-mean": "Spectral-mean MLP",
}
METRICS = ["image_oa", "image_aa", "image_kappa", "window_oa"]


def plain_stages(**values: Any) -> TrainSettings:
    """`TrainSettings` whose two stages train with `FitOptions`' own defaults (random scale
    only, weight decay 1e-4, no label smoothing) instead of the preset's, keeping the network
    whatever the linear pixel model scores, updated by `values`."""
    plain = FitOptions()
    return TrainSettings(
        **{
            "weight_decay": plain.weight_decay,
            "augment_scale": list(plain.augment.scale),
            "flip": plain.augment.flip,
            "rot90": plain.augment.rot90,
            "noise": plain.augment.noise,
            "label_smoothing": plain.label_smoothing,
            "compare_linear": False,
            **values,
        }
    )


def train_seed(seed: int, args: argparse.Namespace, data, embeddings, workdir: Path) -> dict:
    """Train the four methods on split `seed`; returns {method: {metric: value}}."""
    split = split_objects(data.labels, data.class_names, train=args.train, val=args.val, seed=seed)
    options = FitOptions(epochs=args.epochs, patience=args.patience, batch_size=args.batch_size)
    training = plain_stages(
        window=args.window,
        windows_per_image=args.windows,
        epochs=args.epochs,
        semantic_epochs=args.epochs,
        patience=args.patience,
        batch_size=args.batch_size,
        seed=seed,
    )
    folder = workdir / f"seed{seed}"
    s3fn = train_classifier(
        data,
        split,
        settings=training,
        class_embeddings=embeddings,
        workdir=folder,
        in_memory=True,
        verbose=args.verbose,
    )
    settings = {"window": s3fn.window, "n_windows": s3fn.n_windows, "seed": seed}
    cnn = Classifier(s3fn.model.backbone, s3fn.preprocessor, data.class_names, **settings)
    torch.manual_seed(seed)
    learnable = S3FN(
        copy.deepcopy(s3fn.model.backbone), embeddings, temperature="learnable", init_scale=10.0
    )
    train = WindowStore(folder / "windows" / "train.h5", in_memory=True)
    val = WindowStore(folder / "windows" / "val.h5", in_memory=True)
    fit(learnable, train, val, stage="semantic", options=options, seed=seed, verbose=args.verbose)
    learnable_clf = Classifier(learnable, s3fn.preprocessor, data.class_names, **settings)
    mean = train_classifier(
        data, split, settings=replace(training, stage="spectral-mean"), in_memory=True
    )
    classifiers = {"s3fn": s3fn, "s3fn-learnable": learnable_clf, "cnn": cnn, "spectral-mean": mean}
    out = {}
    for name, classifier in classifiers.items():
        out[name] = classifier.evaluate(data, split.test).scalars()
        out[name]["components"] = s3fn.preprocessor.n_components
    out["s3fn"]["epochs_cnn"] = len(s3fn.info["histories"]["cnn"])
    out["s3fn"]["epochs_semantic"] = len(s3fn.info["histories"]["semantic"])
    out["s3fn-learnable"]["final_scale"] = learnable.scale.item()
    return out


def main() -> None:
    """Run every seed, write the JSON result and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--train", type=int, default=4, help="training images per class")
    parser.add_argument("--val", type=int, default=2, help="validation images per class")
    parser.add_argument("--window", type=int, default=16, help="window side in pixels")
    parser.add_argument("--windows", type=int, default=20, help="windows per image")
    parser.add_argument("--epochs", type=int, default=40, help="maximum epochs per stage")
    parser.add_argument("--patience", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--output", type=Path, default=RESULTS, help="where the JSON goes")
    parser.add_argument("--verbose", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    start = time.perf_counter()
    data = builtin.load("materials", seed=0)
    encoder = TextEncoder()
    names, embeddings = encoder.encode_classes(
        bundled_descriptions("materials").select(data.class_names)
    )
    assert names == data.class_names
    per_seed: dict[int, dict] = {}
    with tempfile.TemporaryDirectory(prefix="s3fn-seeds-") as tmp:
        for seed in args.seeds:
            per_seed[seed] = train_seed(seed, args, data, embeddings, Path(tmp))
            elapsed = time.perf_counter() - start
            line = "  ".join(f"{m} {per_seed[seed][m]['image_oa']:.3f}" for m in METHODS)
            print(f"seed {seed} done ({elapsed:.0f}s): image OA {line}", flush=True)
    summaries = {
        label: run_seeds(lambda seed, m=method: per_seed[seed][m], args.seeds)
        for method, label in METHODS.items()
    }
    table = markdown_table(
        summaries,
        METRICS,
        headers=["image OA (%)", "image AA (%)", "image kappa (x100)", "window OA (%)"],
    )
    result = {
        "dataset": "materials (built-in, seed 0): 8 classes x 16 images, 180 bands",
        "protocol": {
            "train_images_per_class": args.train,
            "val_images_per_class": args.val,
            "test_images_per_class": 16 - args.train - args.val,
            "window": args.window,
            "windows_per_image": args.windows,
            "pca_variance": 0.999,
            "max_epochs_per_stage": args.epochs,
            "patience": args.patience,
            "batch_size": args.batch_size,
            "optimizer": "Adam lr 1e-3, weight decay 1e-4",
            "augmentation": "random global scale in [0.9, 1.1]",
            "voting": f"majority over {args.windows} windows per test image",
            "text_encoder": encoder.name,
            "threads": args.threads,
        },
        "seeds": args.seeds,
        "methods": {label: s.to_dict() for label, s in summaries.items()},
        "table": table,
        "seconds": round(time.perf_counter() - start, 1),
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=2) + "\n")
    print(table)
    print(f"wrote {args.output} ({result['seconds']} s)")


if __name__ == "__main__":
    main()
