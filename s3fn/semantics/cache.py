"""On-disk caches for label semantics: class embeddings (.npz) and LLM replies (.json).

Entries are named by a SHA-256 of their inputs and written atomically (temporary file in
the same folder, then `os.replace`), so an interrupted run never leaves a half-written entry.
The default root is `$S3FN_CACHE` or `~/.cache/s3fn`.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import warnings
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from s3fn.atomic import atomic_write_bytes
from s3fn.cache_dir import default_cache_dir


def content_key(obj: Any) -> str:
    """SHA-256 hex digest of `obj` as canonical JSON: equal inputs give equal keys everywhere."""
    text = json.dumps(obj, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


class EmbeddingCache:
    """Class embeddings on disk, one `<key>.npz` per class (vector + a JSON `info` record)."""

    def __init__(self, folder: str | os.PathLike[str] | None = None) -> None:
        self.folder = Path(folder) if folder is not None else default_cache_dir("embeddings")

    def path(self, key: str) -> Path:
        """Where the entry for `key` lives."""
        return self.folder / f"{key}.npz"

    def get(self, key: str) -> np.ndarray | None:
        """The stored float32 vector for `key`, or None (a missing or unreadable entry)."""
        path = self.path(key)
        if not path.is_file():
            return None
        try:
            with np.load(path, allow_pickle=False) as entry:
                return np.asarray(entry["embedding"], dtype=np.float32)
        except (OSError, ValueError, KeyError, zipfile.BadZipFile) as exc:
            warnings.warn(
                f"{path}: unreadable embedding cache entry ({exc}); recomputing it", stacklevel=2
            )
            return None

    def put(self, key: str, vector: np.ndarray, info: Mapping[str, Any]) -> Path:
        """Store `vector` (with `info`, e.g. class and model names, for humans) under `key`."""
        buffer = io.BytesIO()
        np.savez(
            buffer,
            embedding=np.asarray(vector, dtype=np.float32),
            info=np.array(json.dumps(dict(info), ensure_ascii=False)),
        )
        path = self.path(key)
        atomic_write_bytes(path, buffer.getvalue())
        return path


class ReplyCache:
    """LLM replies on disk, one `<key>.json` per request (the request and the reply text)."""

    def __init__(self, folder: str | os.PathLike[str] | None = None) -> None:
        self.folder = Path(folder) if folder is not None else default_cache_dir("llm")

    def path(self, key: str) -> Path:
        """Where the entry for `key` lives."""
        return self.folder / f"{key}.json"

    def get(self, key: str) -> str | None:
        """The stored reply for `key`, or None (a missing or unreadable entry)."""
        path = self.path(key)
        if not path.is_file():
            return None
        try:
            reply = json.loads(path.read_text(encoding="utf-8"))["reply"]
        except (OSError, ValueError, KeyError, TypeError) as exc:
            warnings.warn(
                f"{path}: unreadable LLM reply cache entry ({exc}); asking again", stacklevel=2
            )
            return None
        return reply if isinstance(reply, str) else None

    def put(self, key: str, request: Mapping[str, Any], reply: str) -> Path:
        """Store `reply` to `request` under `key`."""
        record = {"request": dict(request), "reply": reply}
        path = self.path(key)
        atomic_write_bytes(path, (json.dumps(record, indent=2, ensure_ascii=False) + "\n").encode())
        return path
