"""`python -m s3fn info` reports what the binary was built with."""

from __future__ import annotations

import json
import subprocess
import sys

import torch

import s3fn
from s3fn._extension import load_extension


def run_info(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "s3fn", "info", *args], capture_output=True, text=True, check=True
    )


def test_info_json_tells_the_truth_about_the_build():
    info = json.loads(run_info("--json").stdout)
    ext = load_extension()
    assert info["s3fn"] == s3fn.__version__
    assert info["torch"] == torch.__version__
    assert info["backends"] == (["cpu", "cuda"] if ext.built_with_cuda else ["cpu"])
    assert info["threads"] >= 1
    if not ext.built_with_cuda:
        assert info["cuda_archs"] == []
        expected_reason = "is a CPU build" if torch.version.cuda is None else ""
        assert expected_reason in info["cuda_status"]
    assert hasattr(torch.ops.s3fn, "conv3d_block")


def test_info_text_names_backends_and_threads():
    out = run_info().stdout
    assert f"s3fn {s3fn.__version__}" in out
    assert "backends: cpu" in out
    assert f"threads: {torch.get_num_threads()}" in out
