"""Class embeddings for a run: from a descriptions file through a text encoder (with a bar),
or from an embeddings file written by `s3fn embed` (safetensors + class names)."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path

import torch

from s3fn.data.errors import S3FNDataError
from s3fn.progress import Progress
from s3fn.semantics.descriptions import Descriptions, bundled_descriptions, load_descriptions
from s3fn.semantics.encoders import TextEncoder

BUNDLED = "bundled:"


def read_descriptions(spec: str) -> Descriptions:
    """A descriptions file (JSON/YAML), or bundled:<name> for the packaged ones."""
    if spec.startswith(BUNDLED):
        return bundled_descriptions(spec[len(BUNDLED) :])
    return load_descriptions(spec)


def encode(
    descriptions: Descriptions,
    class_names: Sequence[str],
    progress: Progress,
    *,
    encoder: str | None = None,
    pooling: str = "label-token",
) -> tuple[torch.Tensor, str]:
    """(K x d embeddings in `class_names` order, encoder name); a missing class fails first."""
    chosen = descriptions.select(list(class_names))
    bar = progress.bar(len(class_names), "loading text encoder", "class")
    text_encoder = TextEncoder(encoder, pooling=pooling)
    bar.set_description("embedding descriptions")
    rows = []
    for name in class_names:
        rows.append(text_encoder.encode_classes(chosen.select([name]))[1][0])
        bar.update(1)
    bar.close()
    return torch.stack(rows), text_encoder.name


def save_embeddings(
    path: str | os.PathLike, class_names: Sequence[str], embeddings: torch.Tensor, **meta: str
) -> Path:
    """Write `embeddings` (K x d) and the class names to a safetensors file."""
    from safetensors.torch import save_file

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    metadata = {"class_names": json.dumps(list(class_names)), **meta}
    save_file({"embeddings": embeddings.contiguous()}, str(path), metadata=metadata)
    return path


def load_embeddings(path: str | os.PathLike, class_names: Sequence[str]) -> torch.Tensor:
    """The rows of an embeddings file for `class_names`, in that order."""
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: embeddings file not found")
    try:
        with safe_open(str(path), framework="pt") as handle:
            names = json.loads((handle.metadata() or {})["class_names"])
            table = handle.get_tensor("embeddings")
    except (KeyError, ValueError, OSError) as exc:
        raise S3FNDataError(f"{path}: not an s3fn embeddings file ({exc})") from None
    missing = [n for n in class_names if n not in names]
    if missing:
        raise S3FNDataError(
            f"{path}: no embedding for class {missing[0]!r}; it has {', '.join(names)}"
        )
    return table[[names.index(n) for n in class_names]].float()
