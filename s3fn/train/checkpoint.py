"""Training checkpoints, written atomically: a crash mid-write never leaves a broken file."""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Any

import torch

from s3fn.atomic import atomic_write_bytes

FORMAT = "s3fn.checkpoint"
VERSION = 1


def save_checkpoint(path: str | os.PathLike, state: dict[str, Any]) -> Path:
    """Write `state` (tensors, numbers, strings, lists, dicts) to `path` through a temporary file
    in the same folder and `os.replace`; returns the path."""
    buffer = io.BytesIO()
    torch.save({"format": FORMAT, "version": VERSION, **state}, buffer)
    atomic_write_bytes(path, buffer.getvalue())
    return Path(path)


def load_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """Read a checkpoint written by `save_checkpoint` onto the CPU (no arbitrary code runs)."""
    path = Path(path)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise
    except Exception as exc:
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise ValueError(f"{path}: not a readable s3fn checkpoint ({reason})") from exc
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise ValueError(f"{path}: not an s3fn checkpoint; expected format {FORMAT!r}")
    if state.get("version") != VERSION:
        raise ValueError(f"{path}: checkpoint version {state.get('version')!r}; expected {VERSION}")
    return state
