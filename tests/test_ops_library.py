"""The ops library s3fn/libs3fn_ops.so: no Python in it, loadable without s3fn, loaded by every
way into the ops and registered once, and not loaded by a plain `import s3fn`."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from s3fn._extension import ops_library_path
from s3fn.data import Preprocessor
from s3fn.inference import Classifier
from s3fn.inference.export import export
from s3fn.models import SpectralSpatialCNN

ROOT = Path(__file__).resolve().parents[1]
LIBRARY = ops_library_path()
# Printed by a fresh process: the distinct files named libs3fn_ops it has mapped, and whether
# the op resolves.
REPORT = """
import torch
paths = {line.split()[-1] for line in open("/proc/self/maps") if "libs3fn_ops" in line}
print(len(paths), hasattr(torch.ops.s3fn, "conv3d_block"))
"""


def fresh(code: str) -> str:
    """The last line `code` prints in a fresh interpreter (failing the test if it fails)."""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout.strip().splitlines()[-1]


@pytest.fixture(scope="module")
def exported(tmp_path_factory) -> tuple[Path, Path]:
    """A small untrained 3D-CNN bundle and its .pt2 export, whose graph calls the s3fn ops."""
    root = tmp_path_factory.mktemp("library")
    rng = np.random.default_rng(0)
    preprocessor = Preprocessor.fit(rng.random((300, 18)), n_components=15)
    model = SpectralSpatialCNN(15, 2, window=15, channels=(2, 4, 4))
    bundle = Classifier(model, preprocessor, ["a", "b"], window=15, kind="scene").save(
        root / "bundle"
    )
    return bundle, export(bundle, "pt2", root / "map.pt2", tile=4)


def test_the_library_holds_no_python():
    if shutil.which("nm") is None or shutil.which("readelf") is None:
        pytest.skip("nm / readelf (binutils) not found")
    undefined = subprocess.run(
        ["nm", "-D", "--undefined-only", str(LIBRARY)], capture_output=True, text=True, check=True
    ).stdout
    assert [line for line in undefined.splitlines() if "Py" in line] == []
    needed = subprocess.run(
        ["readelf", "-d", str(LIBRARY)], capture_output=True, text=True, check=True
    ).stdout
    assert "libtorch_cpu.so" in needed
    assert "python" not in needed.lower(), needed


def test_the_library_registers_the_ops_in_a_process_without_s3fn():
    code = (
        f"import sys, torch; torch.ops.load_library({str(LIBRARY)!r}); "
        "torch.ops.s3fn.conv3d_block.default; torch.ops.s3fn.cosine_logits.default; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 's3fn'))"
    )
    assert fresh(code) == "[]"


def test_importing_s3fn_loads_neither_the_library_nor_torch():
    code = (
        "import sys, s3fn; "
        "print('libs3fn_ops' in open('/proc/self/maps').read(), 'torch' in sys.modules)"
    )
    assert fresh(code) == "False False"


@pytest.mark.parametrize(
    "way",
    ["import s3fn.ops", "bundle", "load_exported", "host first", "s3fn info"],
)
def test_every_way_in_registers_the_ops_from_one_library(exported, way):
    bundle, program = exported
    code = {
        "import s3fn.ops": "import s3fn.ops",
        "bundle": f"from s3fn.inference import Classifier; Classifier.load({str(bundle)!r})",
        "load_exported": "from s3fn.inference.export import load_exported; "
        f"load_exported({str(program)!r})",
        # A host that loaded the library itself, then s3fn: the same file, mapped once.
        "host first": f"import torch; torch.ops.load_library({str(LIBRARY)!r}); "
        "import s3fn.ops; from s3fn.inference import Classifier; "
        f"Classifier.load({str(bundle)!r})",
        "s3fn info": "from s3fn.info import build_info; build_info()",
    }[way]
    assert fresh(code + "\n" + REPORT) == "1 True"


def test_s3fn_info_names_the_library():
    done = subprocess.run(
        [sys.executable, "-m", "s3fn", "info"], capture_output=True, text=True, check=True
    )
    assert f"ops library: {LIBRARY}" in done.stdout
