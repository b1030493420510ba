"""`s3fn export`: a bundle's whole map model for one tile, as ONNX, a torch.export .pt2 or an
AOTInductor package."""

from __future__ import annotations

import argparse
import json

from s3fn.cli.common import set_threads
from s3fn.progress import print_outputs


def configure(parser: argparse.ArgumentParser) -> None:
    """Add the command's description and options."""
    from s3fn.inference.export import DEFAULT_MARCH, FORMATS, MARCHES

    parser.description = (
        "Export the bundle's map model for one tile (raw radiometry (1, B, H, W) in, class "
        "probabilities of every window inside the tile out; preprocessing and no-data "
        "handling inside) as ONNX (standard ops), a torch.export .pt2 (the fused s3fn ops) or "
        "an AOTInductor package (that .pt2 compiled to C++, for a C++ host without Python; "
        "compiling takes tens of seconds), with <PATH>.json beside it: bands, window, the halo "
        "a host adds around each tile, tile sizes, and the difference from `s3fn predict --map` "
        "measured on a check tile."
    )
    parser.add_argument("bundle", metavar="BUNDLE_OR_RUN", help="bundle folder (or a run folder)")
    parser.add_argument(
        "--format", required=True, choices=FORMATS, dest="fmt", help="artefact format"
    )
    parser.add_argument("--out", required=True, metavar="PATH", help="file to write")
    parser.add_argument(
        "--tile",
        type=int,
        metavar="N",
        help="fix the tile at N x N mapped pixels (input N + window - 1); default: dynamic",
    )
    parser.add_argument(
        "--march",
        choices=tuple(MARCHES),
        help="aoti: the instruction set of the package's own kernels (default "
        f"{DEFAULT_MARCH}, which runs on other CPUs; native: this machine's, may not); the "
        "fused s3fn ops choose theirs at run time",
    )
    parser.add_argument(
        "--device", choices=("cpu", "cuda"), default="cpu", help="aoti: the device it runs on"
    )
    parser.add_argument("--threads", type=int, help="CPU threads")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Export, then print what was written and how far it is from predict_map."""
    from s3fn.inference.export import export, sidecar_path

    set_threads(args.threads)
    out = export(
        args.bundle, args.fmt, args.out, tile=args.tile, march=args.march, device=args.device
    )
    facts = json.loads(sidecar_path(out).read_text(encoding="utf-8"))
    rows, cols = facts["check_tile"]
    tile = facts["tile"]
    sizes = (
        f"fixed {tile['output'][0]}x{tile['output'][1]} output tile"
        if not tile["dynamic"]
        else f"dynamic tiles, output sides multiples of {tile['output_multiple']}"
    )
    print(
        f"max |difference| from predict_map on a {rows}x{cols} check tile: "
        f"{facts['max_abs_diff']:.2g} ({sizes}; halo {_halo(facts['halo'])})"
    )
    if args.fmt == "aoti":
        print(
            f"compiled for {facts['device']}, instruction set {facts['march']} "
            f"(vector code {facts['cpu_isa']}), torch {facts['torch_version']}"
        )
    print_outputs("wrote:", [out, sidecar_path(out)])
    return 0


def _halo(sides: dict[str, int]) -> str:
    return ", ".join(f"{side} {sides[side]}" for side in ("top", "left", "bottom", "right"))
