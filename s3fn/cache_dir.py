"""Where s3fn keeps what it makes once: built-in datasets, text embeddings, LLM replies."""

from __future__ import annotations

import os
from pathlib import Path


def cache_root() -> Path:
    """`$S3FN_CACHE`, else `$XDG_CACHE_HOME/s3fn`, else `~/.cache/s3fn`."""
    if os.environ.get("S3FN_CACHE"):
        return Path(os.environ["S3FN_CACHE"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base).expanduser() / "s3fn"


def default_cache_dir(kind: str) -> Path:
    """The cache folder of one kind of content, e.g. "embeddings" or "builtin"."""
    return cache_root() / kind
