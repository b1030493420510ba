"""The package's import rules: the command layer on top, inference beside training and never
below it, and no module longer than a reader can hold (800 lines)."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "s3fn"
MAX_LINES = 800


def imported_modules(path: Path) -> set[str]:
    """Every module an `import` or `from ... import` in the file names, lazy imports included."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def modules_under(folder: Path) -> list[Path]:
    return sorted(folder.rglob("*.py"))


def test_nothing_below_the_command_layer_imports_it():
    below = [
        p
        for p in modules_under(PACKAGE)
        if PACKAGE / "cli" not in p.parents and p.name != "__main__.py"
    ]
    offenders = {
        str(p.relative_to(ROOT)): sorted(m for m in imported_modules(p) if m.startswith("s3fn.cli"))
        for p in below
    }
    assert {k: v for k, v in offenders.items() if v} == {}


def test_inference_imports_nothing_from_training():
    offenders = {
        str(p.relative_to(ROOT)): sorted(
            m for m in imported_modules(p) if m == "s3fn.train" or m.startswith("s3fn.train.")
        )
        for p in modules_under(PACKAGE / "inference")
    }
    assert {k: v for k, v in offenders.items() if v} == {}


def test_predicting_loads_no_training_code(tmp_path):
    """`s3fn predict` on a bundle, in a fresh process: no module of s3fn.train is loaded."""
    from s3fn.data import Preprocessor
    from s3fn.inference import Classifier
    from s3fn.models import SpectralMeanMLP

    rng = np.random.default_rng(0)
    preprocessor = Preprocessor.fit(rng.random((200, 6)), n_components=3)
    bundle = Classifier(SpectralMeanMLP(3, 2), preprocessor, ["a", "b"], window=3).save(
        tmp_path / "bundle"
    )
    cube = tmp_path / "cube.npy"
    np.save(cube, rng.random((9, 9, 6)).astype(np.float32))
    code = (
        "import sys; from s3fn.cli import main; "
        f"code = main(['predict', {str(bundle)!r}, {str(cube)!r}, '--map', '--quiet', "
        f"'--out', {str(tmp_path / 'out')!r}]); "
        "print(code, sorted(m for m in sys.modules if m.startswith('s3fn.train')))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT
    )
    assert done.stdout.strip().splitlines()[-1] == "0 []", done.stdout + done.stderr
    assert (tmp_path / "out" / "cube_labels.tif").is_file()


def test_no_module_is_longer_than_a_reader_can_hold():
    sources = [
        *modules_under(PACKAGE),
        *modules_under(ROOT / "benchmarks"),
        *(ROOT / "csrc").rglob("*.[ch]*"),
    ]
    long = {
        str(p.relative_to(ROOT)): n
        for p in sources
        if (n := len(p.read_text(encoding="utf-8").splitlines())) > MAX_LINES
    }
    assert long == {}
