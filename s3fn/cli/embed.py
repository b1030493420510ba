"""`s3fn embed`: descriptions -> class embeddings file."""

from __future__ import annotations

import argparse

from s3fn.progress import Progress, print_outputs
from s3fn.semantics import POOLINGS
from s3fn.semantics.class_embeddings import encode, read_descriptions, save_embeddings


def configure(parser: argparse.ArgumentParser) -> None:
    """Add the command's description and options."""
    parser.description = (
        "Embed each class's paragraphs with a text encoder and write the K x d class embeddings "
        "(safetensors, with the class names) for `s3fn train --embeddings`."
    )
    parser.add_argument("descriptions", help="descriptions file (JSON/YAML) or bundled:materials")
    parser.add_argument("--out", required=True, help="embeddings file to write (.safetensors)")
    parser.add_argument(
        "--encoder", help="Hugging Face model name or folder (default: bundled all-MiniLM-L6-v2)"
    )
    parser.add_argument("--pooling", default="label-token", choices=POOLINGS)
    parser.add_argument("--classes", nargs="+", help="only these classes, in this order")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Encode and write the embeddings."""
    descriptions = read_descriptions(args.descriptions)
    names = args.classes or descriptions.names
    embeddings, encoder = encode(
        descriptions, names, Progress(args.quiet), encoder=args.encoder, pooling=args.pooling
    )
    path = save_embeddings(args.out, names, embeddings, encoder=encoder, pooling=args.pooling)
    print(f"{len(names)} classes x {embeddings.shape[1]} dimensions ({encoder}, {args.pooling})")
    print_outputs("wrote:", [path])
    return 0
