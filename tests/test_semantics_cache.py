"""On-disk caches: keys, atomic writes, default folders, unreadable entries."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

from s3fn.atomic import atomic_write_bytes
from s3fn.semantics import EmbeddingCache, ReplyCache, default_cache_dir
from s3fn.semantics.cache import content_key


def test_default_folder_follows_s3fn_cache(monkeypatch, tmp_path):
    monkeypatch.setenv("S3FN_CACHE", str(tmp_path))
    assert default_cache_dir("embeddings") == tmp_path / "embeddings"
    assert EmbeddingCache().folder == tmp_path / "embeddings"
    assert ReplyCache().folder == tmp_path / "llm"
    monkeypatch.delenv("S3FN_CACHE")
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert default_cache_dir("embeddings") == tmp_path / "home" / ".cache" / "s3fn" / "embeddings"


def test_content_key_is_canonical():
    a = content_key({"model": "m", "text": ["x", "y"], "pooling": "mean"})
    b = content_key({"pooling": "mean", "text": ["x", "y"], "model": "m"})
    assert a == b and len(a) == 64
    assert content_key({"text": ["y", "x"]}) != content_key({"text": ["x", "y"]})


def test_embedding_round_trip(tmp_path):
    cache = EmbeddingCache(tmp_path / "emb")
    assert cache.get("k") is None
    vector = np.arange(5, dtype=np.float64) / 3
    path = cache.put("k", vector, {"class": "soil", "model": "m"})
    assert path == tmp_path / "emb" / "k.npz"
    got = cache.get("k")
    assert got.dtype == np.float32
    np.testing.assert_array_equal(got, vector.astype(np.float32))
    with np.load(path) as entry:
        assert json.loads(str(entry["info"])) == {"class": "soil", "model": "m"}
    assert os.listdir(tmp_path / "emb") == ["k.npz"]  # no temporary file left behind


def test_reply_round_trip_and_unreadable_entries(tmp_path):
    cache = ReplyCache(tmp_path)
    cache.put("k", {"model": "m"}, "Soil is brown.")
    assert cache.get("k") == "Soil is brown."
    cache.path("bad").write_text("{not json")
    with pytest.warns(UserWarning, match="unreadable LLM reply cache entry"):
        assert cache.get("bad") is None


def test_atomic_write_keeps_the_old_file_when_writing_fails(tmp_path, monkeypatch):
    target = tmp_path / "sub" / "f.bin"
    atomic_write_bytes(target, b"old")

    def fail(*_):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", fail)
    with pytest.raises(OSError, match="disk full"):
        atomic_write_bytes(target, b"new")
    assert target.read_bytes() == b"old"
    assert os.listdir(target.parent) == ["f.bin"]
