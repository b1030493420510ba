"""Bad input through a real `python -m s3fn` process: one line on stderr, exit code 1 or 2."""

from __future__ import annotations

import numpy as np
import pytest

from s3fn.cli import main
from tests.cli_helpers import BANDS, CLASSES, TINY, descriptions_file, object_folder, s3fn


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    """A tiny trained 3D-CNN run on 6-band cubes."""
    root = tmp_path_factory.mktemp("errors")
    run = root / "run"
    args = ["train", "--data", str(object_folder(root / "data")), "--stage", "cnn"]
    assert main([*args, "--out", str(run), *TINY]) == 0
    return run / "bundle"


def one_line_error(result, *needles: str) -> None:
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("s3fn: error: ")
    for needle in needles:
        assert needle in lines[0]
    assert "Traceback" not in result.stderr


def test_a_bad_path_is_one_line_and_exit_1(tmp_path):
    result = s3fn("train", "--data", str(tmp_path / "missing"), "--stage", "cnn", "--out",
                  str(tmp_path / "run"))  # fmt: skip
    assert result.returncode == 1
    one_line_error(result, "missing", "data not found")


def test_a_missing_class_description_is_one_line_and_exit_1(tmp_path):
    data = object_folder(tmp_path / "data")
    partial = descriptions_file(tmp_path / "partial.yaml", CLASSES[:2])
    result = s3fn("train", "--data", str(data), "--descriptions", str(partial), "--out",
                  str(tmp_path / "run"), "--quiet")  # fmt: skip
    assert result.returncode == 1
    one_line_error(result, "partial.yaml", repr(CLASSES[2]))
    assert not (tmp_path / "run").exists()


def test_a_wrong_band_count_is_one_line_and_exit_1(bundle, tmp_path):
    cube = tmp_path / "seven.npy"
    np.save(cube, np.ones((20, 20, BANDS + 1), dtype=np.float32))
    result = s3fn("predict", str(bundle), str(cube), "--quiet")
    assert result.returncode == 1
    one_line_error(result, f"{BANDS + 1} bands", f"trained on {BANDS} bands")
    debug = s3fn("predict", str(bundle), str(cube), "--quiet", "--debug")
    assert debug.returncode == 1 and "Traceback" in debug.stderr


def test_bad_usage_exits_2(tmp_path):
    result = s3fn("train", "--epochs", "many")
    assert result.returncode == 2
    assert "invalid int value: 'many'" in result.stderr
    assert s3fn("nonsense").returncode == 2
