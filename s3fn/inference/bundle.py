"""The bundle on disk: `model.safetensors` (weights) and `classifier.json` (everything else).

`classifier.json` holds the architecture, class names and embeddings, the fitted z-score + PCA
(with the band centres it was fitted on, when known), the window settings and the weights'
SHA-256, so loading needs no text encoder and no training data.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from s3fn import __version__
from s3fn._extension import load_extension
from s3fn.atomic import atomic_write_bytes
from s3fn.data.errors import S3FNDataError
from s3fn.data.preprocess import Preprocessor
from s3fn.models.registry import build_model
from s3fn.run_folder import BUNDLE_DIR as RUN_BUNDLE_DIR

FORMAT = "s3fn.classifier"
VERSION = 1
CONFIG_FILE = "classifier.json"
WEIGHTS_FILE = "model.safetensors"
SETTINGS = ("kind", "class_names", "window", "voting", "n_windows", "mask_threshold", "seed")


def save_bundle(
    folder: str | os.PathLike,
    model: nn.Module,
    preprocessor: Preprocessor,
    settings: Mapping[str, Any],
    info: Mapping[str, Any],
) -> Path:
    """Write the weights, then `classifier.json` (so a reader never sees new JSON, old weights)."""
    from safetensors.torch import save

    folder = Path(folder)
    tensors = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    weights = save(tensors, metadata={"format": FORMAT})
    atomic_write_bytes(folder / WEIGHTS_FILE, weights)
    embeddings = getattr(model, "class_embeddings", None)
    config = {
        "format": FORMAT,
        "version": VERSION,
        "s3fn_version": __version__,
        **{key: settings[key] for key in SETTINGS},
        "model": model.config(),
        "class_embeddings": None if embeddings is None else embeddings.cpu().tolist(),
        "preprocessor": preprocessor.to_dict(),
        "weights": {"file": WEIGHTS_FILE, "sha256": hashlib.sha256(weights).hexdigest()},
        "info": dict(info),
    }
    atomic_write_bytes(folder / CONFIG_FILE, (json.dumps(config, indent=1) + "\n").encode())
    return folder


def load_bundle(
    folder: str | os.PathLike, *, use_fused_ops: bool = True
) -> tuple[nn.Module, Preprocessor, dict[str, Any]]:
    """The model (on the CPU), the preprocessor and the settings of a bundle written by
    `save_bundle`; the settings include `info`. With `use_fused_ops`, the ops library is
    loaded here, not at the first forward pass: a missing build shows when the bundle loads,
    and a process that goes on to load an exported package finds the ops registered."""
    from safetensors.torch import load

    folder = Path(folder)
    path = folder / CONFIG_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path}: not found; expected an s3fn classifier bundle")
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise S3FNDataError(f"{path}: not valid JSON ({exc})") from exc
    _check_fields(config, path)
    weights_path = folder / config["weights"]["file"]
    if not weights_path.is_file():
        raise FileNotFoundError(f"{weights_path}: weights file named by {path} not found")
    weights = weights_path.read_bytes()
    if hashlib.sha256(weights).hexdigest() != config["weights"]["sha256"]:
        raise S3FNDataError(
            f"{weights_path}: SHA-256 differs from the one in {path}; expected the weights "
            "saved with this classifier.json"
        )
    embeddings = config["class_embeddings"]
    model = build_model(
        config["model"],
        class_embeddings=None if embeddings is None else torch.tensor(embeddings),
        use_fused_ops=use_fused_ops,
    )
    model.load_state_dict(load(weights))
    if use_fused_ops:
        load_extension()
    preprocessor = Preprocessor.from_dict(config["preprocessor"], source=f"{path}: preprocessor")
    settings = {key: config[key] for key in SETTINGS}
    settings["info"] = config.get("info") or {}
    return model, preprocessor, settings


def locate_bundle(path: str | os.PathLike) -> tuple[Path, Path | None]:
    """(bundle folder, run folder or None) of a run folder of `s3fn train` or a bundle folder."""
    path = Path(path)
    if (path / RUN_BUNDLE_DIR / CONFIG_FILE).is_file():
        return path / RUN_BUNDLE_DIR, path
    if (path / CONFIG_FILE).is_file():
        return path, None
    raise FileNotFoundError(
        f"{path}: neither a run folder (with {RUN_BUNDLE_DIR}/{CONFIG_FILE}) nor a bundle "
        f"(with {CONFIG_FILE})"
    )


def _check_fields(config: Any, path: Path) -> None:
    if not isinstance(config, dict) or config.get("format") != FORMAT:
        raise S3FNDataError(f"{path}: field 'format' is not {FORMAT!r}; not an s3fn classifier")
    if config.get("version") != VERSION:
        raise S3FNDataError(f"{path}: version {config.get('version')!r}; expected {VERSION}")
    missing = [
        f
        for f in (*SETTINGS, "model", "class_embeddings", "preprocessor", "weights")
        if f not in config
    ]
    if missing:
        raise S3FNDataError(f"{path}: field {missing[0]!r} is missing")
