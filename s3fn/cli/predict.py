"""`s3fn predict`: classify cubes with a bundle (one label per image, or a label map)."""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

from s3fn import process_group
from s3fn.cli.common import add_band_tolerance, set_threads
from s3fn.data import read_cube
from s3fn.inference import Classifier, locate_bundle
from s3fn.inference.maps import DEFAULT_TILE
from s3fn.inference.shared_maps import class_counts, map_cubes, preview
from s3fn.progress import Progress, print_outputs


def configure(parser: argparse.ArgumentParser) -> None:
    """Add the command's description and options."""
    parser.description = (
        "Classify each CUBE with the bundle: one label per image (a vote over windows inside "
        "the object), or with --map a label per pixel, written tile by tile as "
        "<stem>_labels.tif (GeoTIFF with the cube's CRS, class names and colours; an EMIT swath "
        "on its lookup table's grid; --format envi for an ENVI classification file), "
        "optionally <stem>_probabilities, and a PNG "
        "preview. Under torchrun the cubes (or the tiles of one cube) are shared across the "
        "processes."
    )
    parser.add_argument("bundle", metavar="BUNDLE", help="bundle folder (or a run folder)")
    parser.add_argument("cubes", nargs="+", metavar="CUBE", help="cube files (any format)")
    parser.add_argument("--map", action="store_true", help="label every pixel")
    parser.add_argument(
        "--format", choices=("tif", "envi"), default="tif", help="map file format (default: tif)"
    )
    parser.add_argument(
        "--probabilities", action="store_true", help="with --map, also the class probabilities"
    )
    parser.add_argument(
        "--tile", type=int, default=DEFAULT_TILE, help=f"map tile side (default: {DEFAULT_TILE})"
    )
    parser.add_argument(
        "--swath",
        action="store_true",
        help="with --map, write an EMIT swath's map on the swath itself (no CRS) instead of "
        "on the georeferenced grid of its geometry lookup table",
    )
    parser.add_argument("--key", help="array name inside .mat/.npz/HDF5 cube files")
    parser.add_argument("--out", help="folder for predictions.csv / the maps (default: .)")
    add_band_tolerance(parser)
    parser.add_argument("--threads", type=int, help="CPU threads")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Predict every cube; print the labels and where the files went."""
    set_threads(args.threads)
    classifier = Classifier.load(locate_bundle(args.bundle)[0])
    classifier.band_tolerance = args.band_tolerance
    out = Path(args.out or ".")
    out.mkdir(parents=True, exist_ok=True)
    if args.map:
        group = process_group.init_from_env()
        progress = Progress(args.quiet or (group is not None and not group.is_writer))
        try:
            written = _maps(classifier, args, out, progress)
        finally:
            process_group.shutdown()
        if group is None or group.is_writer:
            print_outputs("wrote:", written)
        return 0
    written, rows = [], []
    for name in Progress(args.quiet).each(args.cubes, "predicting", "cube"):
        prediction = classifier.predict_image(read_cube(name, key=args.key))
        confidence = float(prediction.probabilities[prediction.index])
        print(f"{name}: {prediction.label} (mean probability {confidence:.3f})")
        rows.append((name, prediction.label, f"{confidence:.4f}"))
    table = out / "predictions.csv"
    with table.open("w", newline="") as handle:
        csv.writer(handle).writerows([("cube", "label", "probability"), *rows])
    print_outputs("wrote:", [table])
    return 0


def _maps(
    classifier: Classifier, args: argparse.Namespace, out: Path, progress: Progress
) -> list[Path]:
    written = map_cubes(
        classifier,
        args.cubes,
        out,
        fmt=args.format,
        probabilities=args.probabilities,
        key=args.key,
        tile=args.tile,
        progress=progress,
        swath=args.swath,
    )
    process_group.barrier()
    for path in written:
        if path.name.split(".")[0].endswith("_labels"):
            shown = preview(path, classifier.class_names, path.name)
            counts = class_counts(path, len(classifier.class_names))
            top = classifier.class_names[int(counts.argmax())]
            print(f"{path}: most pixels {top}")
            if shown is not None:
                written = [*written, shown]
    return written
