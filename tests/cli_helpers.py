"""Tiny object datasets, descriptions and options for the command-line tests."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import yaml

from tests.data_helpers import write_object_folder

CLASSES = ["dark", "medium", "bright"]
BANDS = 6
# a small network and few windows: each training run takes a second or two
TINY = [
    "--window", "8", "--padding", "1", "--channels", "2", "4", "4", "--n-components", "4",
    "--windows-per-image", "4", "--epochs", "2", "--semantic-epochs", "2", "--patience", "5",
    "--train", "2", "--val", "1", "--batch-size", "8", "--quiet",
]  # fmt: skip


def object_folder(root: Path, bands: int = BANDS) -> Path:
    """root/<class>/<class>_<i>.npy, 4 images per class, `bands` bands."""
    return write_object_folder(root, CLASSES, per_class=4, size=20, bands=bands)


def descriptions_file(path: Path, classes: list[str] = CLASSES) -> Path:
    """A YAML descriptions file with two short paragraphs per class."""
    data = {
        "classes": {
            name: [
                f"The {name} material reflects {name} light across the visible range.",
                f"In the near infrared the {name} class keeps a flat spectrum.",
            ]
            for name in classes
        }
    }
    path.write_text(yaml.safe_dump(data))
    return path


def s3fn(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    """Run `python -m s3fn ARGS` in a fresh process; returns its exit code and output."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    return subprocess.run(
        [sys.executable, "-m", "s3fn", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=env,
        timeout=300,
    )
