"""`s3fn predict`: classify cubes with a bundle (one label per image, or a label map)."""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

import numpy as np

from s3fn.cli.common import print_outputs, set_threads
from s3fn.cli.progress import Progress


def add_parser(commands: argparse._SubParsersAction, parent: argparse.ArgumentParser) -> None:
    """Register the subcommand."""
    parser = commands.add_parser(
        "predict",
        parents=[parent],
        help="classify cubes with a bundle",
        description="Classify each CUBE with the bundle: one label per image (a vote over "
        "windows inside the object), or with --map a label per pixel, written as <stem>.npy "
        "(class indices, -1 = none) and <stem>.png with a legend.",
    )
    parser.add_argument("bundle", metavar="BUNDLE", help="bundle folder (or a run folder)")
    parser.add_argument("cubes", nargs="+", metavar="CUBE", help="cube files (any format)")
    parser.add_argument("--map", action="store_true", help="label every pixel")
    parser.add_argument("--key", help="array name inside .mat/.npz/HDF5 cube files")
    parser.add_argument("--out", help="folder for predictions.csv / the maps (default: .)")
    parser.add_argument("--threads", type=int, help="CPU threads")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Predict every cube; print the labels and where the files went."""
    from s3fn.cli.evaluate import locate
    from s3fn.data import read_cube
    from s3fn.inference import Classifier
    from s3fn.report import label_map

    set_threads(args.threads)
    classifier = Classifier.load(locate(args.bundle)[0])
    out = Path(args.out or ".")
    out.mkdir(parents=True, exist_ok=True)
    progress = Progress(args.quiet)
    written, rows = [], []
    for name in progress.each(args.cubes, "predicting", "cube"):
        cube = read_cube(name, key=args.key)
        if args.map:
            labels = np.asarray(classifier.predict_map(cube))
            stem = out / Path(name).name.split(".")[0]
            np.save(stem.with_suffix(".npy"), labels)
            label_map(labels, classifier.class_names, stem.with_suffix(".png"), Path(name).name)
            counts = np.bincount(labels[labels >= 0], minlength=len(classifier.class_names))
            top = classifier.class_names[int(counts.argmax())]
            print(f"{name}: {labels.shape[0]}x{labels.shape[1]} map, most pixels {top}")
            written += [stem.with_suffix(".npy"), stem.with_suffix(".png")]
        else:
            prediction = classifier.predict_image(cube)
            confidence = float(prediction.probabilities[prediction.index])
            print(f"{name}: {prediction.label} (mean probability {confidence:.3f})")
            rows.append((name, prediction.label, f"{confidence:.4f}"))
    if rows:
        table = out / "predictions.csv"
        with table.open("w", newline="") as handle:
            csv.writer(handle).writerows([("cube", "label", "probability"), *rows])
        written.append(table)
    print_outputs("wrote:", written)
    return 0
