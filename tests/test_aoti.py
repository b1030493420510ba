"""AOTInductor packages (`s3fn export --format aoti`) and the C++ host of examples/cpp: one
package compiled per session, run in a fresh process and by `s3fn-map-cube` against
predict_map; the portable instruction set it is compiled for; packages of another torch and
bad input refused in one line."""

from __future__ import annotations

import contextlib
import io
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import warnings
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch

from s3fn._extension import ops_library_path
from s3fn.cli import main
from s3fn.inference import Classifier
from s3fn.inference.export import (
    DEFAULT_MARCH,
    ExportError,
    PackageError,
    export,
    load_aoti,
    load_exported,
    package_metadata,
    sidecar_path,
)
from s3fn.train import TrainSettings, train_classifier
from tests.export_helpers import (
    EMBEDDINGS,
    FAST,
    SCENE_BANDS,
    SCENE_WINDOW,
    as_input,
    mosaic,
    probabilities,
    scene_cube,
    scene_dataset,
)

ROOT = Path(__file__).resolve().parents[1]
HOST_SOURCES = ROOT / "examples" / "cpp"
X86 = platform.machine() in ("x86_64", "AMD64")
OTHER_TORCH = "2.12.0+cpu"
RUNNER = """
import sys
import numpy as np, torch
from s3fn.inference.export import load_aoti
model = load_aoti(sys.argv[1])
np.save(sys.argv[3], model(torch.from_numpy(np.load(sys.argv[2]))).numpy())
"""


@dataclass
class Scene:
    folder: Path
    classifier: Classifier
    cube: np.ndarray


@dataclass
class Package:
    path: Path
    facts: dict
    printed: str


@pytest.fixture(scope="session")
def scene(tmp_path_factory) -> Scene:
    """A two-stage S3FN on the 40 x 40 test scene (15 x 15 windows, two pools), saved."""
    cube, labels = scene_cube()
    dataset, split = scene_dataset(cube, labels)
    settings = TrainSettings(window=SCENE_WINDOW, n_components=15, **FAST)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # no validation part on data this small
        trained = train_classifier(dataset, split, settings=settings, class_embeddings=EMBEDDINGS)
    folder = trained.save(tmp_path_factory.mktemp("aoti") / "scene")
    return Scene(folder, Classifier.load(folder), cube)


@pytest.fixture(scope="session")
def package(scene, tmp_path_factory) -> Package:
    """The scene bundle compiled once, by the command, for the default instruction set."""
    out = tmp_path_factory.mktemp("package") / "scene.pt2"
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        code = main(["export", str(scene.folder), "--format", "aoti", "--out", str(out)])
    assert code == 0, printed.getvalue()
    facts = json.loads(sidecar_path(out).read_text(encoding="utf-8"))
    return Package(out, facts, printed.getvalue())


@pytest.fixture(scope="session")
def host(tmp_path_factory) -> Path:
    """examples/cpp built with cmake against this torch's libtorch."""
    cmake = shutil.which("cmake")
    if cmake is None:
        pytest.skip("cmake not found: the C++ host is not built")
    if not (os.environ.get("CXX") or shutil.which("c++") or shutil.which("g++")):
        pytest.skip("no C++ compiler (c++, g++ or $CXX): the C++ host is not built")
    build = tmp_path_factory.mktemp("host")
    configure = [cmake, "-S", str(HOST_SOURCES), "-B", str(build), "-DCMAKE_BUILD_TYPE=Release"]
    configure.append(f"-DCMAKE_PREFIX_PATH={torch.utils.cmake_prefix_path}")
    if shutil.which("ninja"):
        configure += ["-G", "Ninja"]
    for command in (configure, [cmake, "--build", str(build)]):
        done = subprocess.run(command, capture_output=True, text=True)
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return build / "s3fn-map-cube"


def map_cube(host: Path, package: Path, cube: Path, labels: Path, *options: str):
    """Run the C++ host; its completed process."""
    command = [host, package, ops_library_path(), cube, labels, *options]
    return subprocess.run([str(c) for c in command], capture_output=True, text=True)


def with_torch_version(package: Path, version: str, out: Path) -> Path:
    """A copy of `package` whose metadata says it was compiled with torch `version`."""
    with zipfile.ZipFile(package) as source, zipfile.ZipFile(out, "w") as copy:
        for item in source.infolist():
            data = source.read(item.filename)
            if item.filename.endswith("_metadata.json"):
                metadata = json.loads(data)
                if "s3fn_torch_version" in metadata:
                    metadata["s3fn_torch_version"] = version
                    data = json.dumps(metadata).encode()
            copy.writestr(item, data)
    return out


def test_the_command_compiles_a_package_that_describes_itself(package):
    facts = package.facts
    assert facts["format"] == "aoti" and facts["file"] == "scene.pt2"
    assert facts["march"] == DEFAULT_MARCH and facts["device"] == "cpu"
    assert facts["torch_version"] == torch.__version__
    assert 0 <= facts["max_abs_diff"] <= 1e-4
    assert facts["tile"]["dynamic"] and facts["tile"]["output_multiple"] == 4
    metadata = package_metadata(package.path)
    assert {key: metadata[key] for key in facts["metadata"]} == facts["metadata"]
    assert metadata["s3fn_torch_version"] == torch.__version__
    assert metadata["s3fn_halo"] == "7 7 7 7" and metadata["s3fn_bands"] == str(SCENE_BANDS)
    assert metadata["s3fn_output_multiple"] == "4" and metadata["s3fn_min_output"] == "8"
    assert f"instruction set {DEFAULT_MARCH}" in package.printed
    assert f"  {package.path}\n" in package.printed


@pytest.mark.skipif(not X86, reason="the portable default is x86-64-v3 on x86-64 only")
def test_the_default_package_runs_on_any_avx2_cpu(package, tmp_path):
    assert package.facts["cpu_isa"] == "AVX2"
    if shutil.which("objdump") is None:
        pytest.skip("objdump (binutils) not found")
    with zipfile.ZipFile(package.path) as archive:
        libraries = [name for name in archive.namelist() if name.endswith(".so")]
        assert libraries
        archive.extractall(tmp_path, libraries)
    for name in libraries:
        code = subprocess.run(
            ["objdump", "-d", str(tmp_path / name)], capture_output=True, text=True, check=True
        ).stdout
        assert "%zmm" not in code, f"{name} uses AVX-512 registers"


def test_the_package_in_a_fresh_process_gives_predict_maps_probabilities(package, scene, tmp_path):
    sides = package.facts["halo"]
    top, left, bottom, right = (sides[s] for s in ("top", "left", "bottom", "right"))
    tile = mosaic(scene.cube, 12 + top + bottom, 20 + left + right, seed=3)
    np.save(tmp_path / "tile.npy", as_input(tile))
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-c", RUNNER, str(package.path), str(tmp_path / "tile.npy")]
    done = subprocess.run(
        [*command, str(tmp_path / "out.npy")], capture_output=True, text=True, env=env, cwd=ROOT
    )
    assert done.returncode == 0, done.stderr[-3000:]
    actual = np.load(tmp_path / "out.npy")
    expected = probabilities(scene.classifier, tile)[..., top : top + 12, left : left + 20]
    assert actual.shape == expected.shape == (1, 3, 12, 20)
    np.testing.assert_allclose(actual, expected, rtol=0, atol=1e-4)
    assert np.isnan(actual).all(axis=1).sum() == 2  # the unseen tile's two no-data pixels


def test_the_cpp_host_maps_a_cube_as_predict_map(host, package, scene, tmp_path):
    cube = np.ascontiguousarray(scene.cube[:, :37])  # 40 x 37: neither side on the grid of 4
    cube[20, 11] = np.nan
    cube[3, 30, 2] = np.nan
    np.save(tmp_path / "cube.npy", cube)
    tiled = tmp_path / "tiled.npy"
    done = map_cube(host, package.path, tmp_path / "cube.npy", tiled, "--tile", "16")
    assert done.returncode == 0, done.stderr
    assert "mapped 40x37 pixels in 9 tiles of up to 16x16" in done.stdout
    labels = np.load(tiled)
    assert labels.dtype == np.int32 and labels.shape == (40, 37)
    expected, probs = scene.classifier.predict_map(cube, return_probabilities=True)
    nodata = expected == -1
    assert nodata.sum() == 2 and nodata[20, 11] and nodata[3, 30]
    top_two = np.sort(np.nan_to_num(probs, nan=0.0), axis=2)[..., -2:]
    sure = nodata | (top_two[..., 1] - top_two[..., 0] > 1e-4)
    assert sure.mean() > 0.9
    np.testing.assert_array_equal(labels[sure], expected[sure])
    assert len(np.unique(expected[~nodata])) > 1  # a trained model: not one class
    # One tile (the default 256, padded to 40 x 40 outputs) gives the same labels.
    done = map_cube(host, package.path, tmp_path / "cube.npy", tmp_path / "whole.npy")
    assert done.returncode == 0, done.stderr
    np.testing.assert_array_equal(np.load(tmp_path / "whole.npy"), labels)


def test_a_package_of_another_torch_is_refused(package, tmp_path):
    old = with_torch_version(package.path, OTHER_TORCH, tmp_path / "old.pt2")
    versions = rf"compiled with torch {re.escape(OTHER_TORCH)}, but this is torch "
    with pytest.raises(PackageError, match=versions + re.escape(torch.__version__)):
        load_aoti(old)


def test_the_cpp_host_refuses_a_package_of_another_torch(host, package, scene, tmp_path):
    old = with_torch_version(package.path, OTHER_TORCH, tmp_path / "old.pt2")
    np.save(tmp_path / "cube.npy", scene.cube)
    done = map_cube(host, old, tmp_path / "cube.npy", tmp_path / "labels.npy")
    assert done.returncode == 1
    assert re.fullmatch(
        rf"s3fn-map-cube: error: {re.escape(str(old))}: compiled with torch "
        rf"{re.escape(OTHER_TORCH)}, but this host links libtorch "
        rf"{re.escape(torch.__version__.split('+')[0])}; .*\n",
        done.stderr,
    ), done.stderr
    assert not (tmp_path / "labels.npy").exists()


def test_the_cpp_host_refuses_bad_input_in_one_line(host, package, scene, tmp_path):
    np.save(tmp_path / "f8.npy", scene.cube.astype(np.float64))
    np.save(tmp_path / "bands.npy", scene.cube[..., :5])
    np.save(tmp_path / "fortran.npy", np.asfortranarray(scene.cube))
    (tmp_path / "short.npy").write_bytes((tmp_path / "bands.npy").read_bytes()[:500])
    cases = {
        "f8.npy": "dtype '<f8'; expected float32",
        "bands.npy": "shape (40, 40, 5); expected H x W x 18",
        "fortran.npy": "Fortran-ordered array; expected C order",
        "short.npy": "truncated: ",
    }
    for name, message in cases.items():
        done = map_cube(host, package.path, tmp_path / name, tmp_path / "labels.npy")
        assert done.returncode == 1, name
        assert done.stderr.startswith(f"s3fn-map-cube: error: {tmp_path / name}: {message}")
        assert done.stderr.count("\n") == 1, done.stderr
    done = map_cube(host, tmp_path / "none.pt2", tmp_path / "f8.npy", tmp_path / "labels.npy")
    assert done.returncode == 1 and "none.pt2: no such AOTInductor package" in done.stderr
    three = [str(p) for p in (host, package.path, ops_library_path(), tmp_path / "f8.npy")]
    done = subprocess.run(three, capture_output=True, text=True)
    assert done.returncode == 2 and done.stderr.startswith("usage: s3fn-map-cube PACKAGE")
    assert not (tmp_path / "labels.npy").exists()


def test_the_loaded_package_refuses_a_tile_off_its_grid(package):
    model = load_aoti(package.path)
    expected = r"expected \(1, 18, H, W\) float32 with H - 14 and W - 14 \(the outputs\) a multiple"
    for shape in ((1, SCENE_BANDS, 21 + 14, 24 + 14), (1, 5, 22, 22), (1, SCENE_BANDS, 18, 22)):
        with pytest.raises(ValueError, match=expected):
            model(torch.zeros(shape))
    with pytest.raises(ValueError, match=r"torch\.float64: expected"):
        model(torch.zeros(1, SCENE_BANDS, 22, 22, dtype=torch.float64))
    assert model(torch.zeros(1, SCENE_BANDS, 22, 22)).shape == (1, 3, 8, 8)


def test_load_exported_points_an_aoti_package_to_load_aoti(package):
    with pytest.raises(PackageError, match=r"an AOTInductor package, .* load it with load_aoti"):
        load_exported(package.path)


def test_load_aoti_refuses_what_is_not_a_package(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"none\.pt2: no such AOTInductor package"):
        load_aoti(tmp_path / "none.pt2")
    (tmp_path / "text.pt2").write_text("not a zip")
    with pytest.raises(PackageError, match=r"text\.pt2: not an AOTInductor package \("):
        load_aoti(tmp_path / "text.pt2")


@pytest.mark.skipif(not X86, reason="x86-64 instruction sets")
def test_march_chooses_what_the_package_is_compiled_for(scene, tmp_path, monkeypatch):
    seen = []

    def compile_only(program, *, package_path, inductor_configs):
        seen.append(inductor_configs)
        raise RuntimeError("stopped before compiling")

    monkeypatch.setattr(torch._inductor, "aoti_compile_and_package", compile_only)
    for march in ("native", "x86-64-v4"):
        with pytest.raises(ExportError, match="stopped before compiling"):
            export(scene.folder, "aoti", tmp_path / "m.pt2", march=march, tile=8)
    assert seen[0]["cpp.march"] is None and seen[0]["cpp.simdlen"] is None
    assert seen[1]["cpp.march"] == "x86-64-v4" and seen[1]["cpp.simdlen"] == 512
    assert seen[1]["aot_inductor.metadata"]["s3fn_march"] == "x86-64-v4"
    assert seen[1]["aot_inductor.metadata"]["s3fn_tile"] == "fixed"
    assert seen[1]["aot_inductor.metadata"]["s3fn_min_output"] == "8"
    with pytest.raises(ValueError, match="march='pentium'; expected one of x86-64, "):
        export(scene.folder, "aoti", tmp_path / "m.pt2", march="pentium")
    with pytest.raises(ValueError, match="march and device apply to aoti packages, not to pt2"):
        export(scene.folder, "pt2", tmp_path / "m.pt2", march="native")
    assert list(tmp_path.iterdir()) == []
