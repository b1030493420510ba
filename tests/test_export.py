"""`s3fn export`: the whole map model of a tile as ONNX and .pt2, run in a fresh process (ONNX
without torch), against `Classifier.predict_map`; the halo contract; the sidecar; refusals."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx
import onnxruntime
import pytest
import torch

from s3fn.cli import main
from s3fn.data import ObjectDataset, S3FNDataError, split_objects
from s3fn.evaluate.voting import vote_one
from s3fn.inference import Classifier
from s3fn.inference import export as export_module
from s3fn.inference.export import ExportError, export, load_exported, sidecar_path
from s3fn.train import TrainSettings, train_classifier
from tests.data_helpers import write_object_folder
from tests.export_helpers import (
    EMBEDDINGS,
    FAST,
    NAMES,
    OBJECT_BANDS,
    SCENE_BANDS,
    SCENE_WINDOW,
    as_input,
    mosaic,
    probabilities,
    scene_cube,
    scene_dataset,
)

ROOT = Path(__file__).resolve().parents[1]
# (bundle, format) pairs; the scene bundle pools twice (dense stride 4), the object one not.
RUNS = [(b, f) for b in ("scene", "object", "linear") for f in ("onnx", "pt2")]

ONNX_RUNNER = """
import json, sys
import numpy as np, onnxruntime
options = onnxruntime.SessionOptions()
options.intra_op_num_threads = 1
for model, tiles in json.loads(sys.argv[1]):
    session = onnxruntime.InferenceSession(model, options, providers=["CPUExecutionProvider"])
    for tile in tiles:
        np.save(tile + ".out.npy", session.run(["probabilities"], {"tile": np.load(tile)})[0])
assert "torch" not in sys.modules, "onnxruntime alone should run the artefact"
"""
PT2_RUNNER = """
import json, sys
import numpy as np, torch
from s3fn.inference.export import load_exported
for model, tiles in json.loads(sys.argv[1]):
    program = load_exported(model).module()
    for tile in tiles:
        np.save(tile + ".out.npy", program(torch.from_numpy(np.load(tile))).numpy())
"""


@dataclass
class Bundle:
    folder: Path
    classifier: Classifier
    cube: np.ndarray  # a whole scene or object image in the bundle's bands


@dataclass
class Run:
    """One export, the tiles run through it in a fresh process, and predict_map's answers."""

    out: Path
    facts: dict
    tiles: dict[str, np.ndarray] = field(default_factory=dict)
    expected: dict[str, np.ndarray] = field(default_factory=dict)
    outputs: dict[str, np.ndarray] = field(default_factory=dict)


@pytest.fixture(scope="module")
def bundles(tmp_path_factory) -> dict[str, Bundle]:
    """A two-stage S3FN and a linear pixel model on a scene, a 3D-CNN on objects, saved."""
    root = tmp_path_factory.mktemp("bundles")
    cube, labels = scene_cube()
    scene, split = scene_dataset(cube, labels)
    objects = ObjectDataset.from_folder(
        write_object_folder(root / "objects", NAMES, per_class=3, size=20, bands=OBJECT_BANDS),
        class_names=NAMES,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # no validation part on data this small
        scene_settings = {"window": SCENE_WINDOW, "n_components": 15, **FAST}
        trained = {
            "scene": train_classifier(
                scene, split, settings=TrainSettings(**scene_settings), class_embeddings=EMBEDDINGS
            ),
            "linear": train_classifier(
                scene, split, settings=TrainSettings(stage="linear", **scene_settings)
            ),
            "object": train_classifier(
                objects,
                split_objects(objects.labels, NAMES, train=2, val=1, seed=0),
                settings=TrainSettings(
                    stage="cnn", window=8, n_components=7, windows_per_image=4, **FAST
                ),
            ),
        }
    cubes = {"scene": cube, "linear": cube, "object": objects[0].cube.data}
    return {
        name: Bundle(clf.save(root / name), Classifier.load(root / name), cubes[name])
        for name, clf in trained.items()
    }


def host_tiles(bundle: Bundle, facts: dict) -> tuple[dict, dict]:
    """Tiles a host would give the artefact, cut with the sidecar's halo, and predict_map's
    probabilities of the pixels they map: an unseen tile (12 x 16 mapped, not the 64 x 64 of
    the check), the largest tile on the artefact's grid that needs no reflection, and the
    whole cube reflect-padded by the halo."""
    top, left, bottom, right = (facts["halo"][s] for s in ("top", "left", "bottom", "right"))
    step = facts["tile"]["output_multiple"]
    whole = probabilities(bundle.classifier, bundle.cube)
    unseen = mosaic(bundle.cube, 12 + top + bottom, 16 + left + right, seed=1)
    height, width = bundle.cube.shape[:2]
    rows, cols = (height - top - bottom) // step * step, (width - left - right) // step * step
    pad = ((top, bottom), (left, right), (0, 0))
    tiles = {
        "unseen": unseen,
        "cut": bundle.cube[: rows + top + bottom, : cols + left + right],
        "whole": np.pad(bundle.cube, pad, mode="reflect"),
    }
    expected = {
        "unseen": probabilities(bundle.classifier, unseen)[..., top : top + 12, left : left + 16],
        "cut": whole[..., top : top + rows, left : left + cols],
        "whole": whole,
    }
    return tiles, expected


@pytest.fixture(scope="module")
def runs(bundles, tmp_path_factory) -> dict[tuple[str, str], Run]:
    """Every (bundle, format) exported, then its `host_tiles` run in two fresh processes."""
    root = tmp_path_factory.mktemp("exports")
    done: dict[tuple[str, str], Run] = {}
    jobs: dict[str, list] = {"onnx": [], "pt2": []}
    for name, fmt in RUNS:
        bundle = bundles[name]
        out = export(bundle.folder, fmt, root / f"{name}.{fmt}")
        run = done[name, fmt] = Run(out, json.loads(sidecar_path(out).read_text()))
        run.tiles, run.expected = host_tiles(bundle, run.facts)
        for key, tile in run.tiles.items():
            np.save(root / f"{name}-{fmt}-{key}.npy", as_input(tile))
        jobs[fmt].append((str(out), [str(root / f"{name}-{fmt}-{key}.npy") for key in run.tiles]))
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    for fmt, runner in (("onnx", ONNX_RUNNER), ("pt2", PT2_RUNNER)):
        command = [sys.executable, "-c", runner, json.dumps(jobs[fmt])]
        process = subprocess.run(command, capture_output=True, text=True, env=env, cwd=ROOT)
        assert process.returncode == 0, process.stderr[-3000:]
    for (name, fmt), run in done.items():
        for key in run.tiles:
            run.outputs[key] = np.load(root / f"{name}-{fmt}-{key}.npy.out.npy")
    return done


@pytest.mark.parametrize(("name", "fmt"), RUNS)
def test_the_artefact_in_a_fresh_process_gives_predict_maps_probabilities(runs, name, fmt):
    run = runs[name, fmt]
    for key in ("unseen", "cut", "whole"):
        actual, expected = run.outputs[key], run.expected[key]
        assert actual.shape == expected.shape, key
        np.testing.assert_allclose(actual, expected, rtol=0, atol=1e-4, err_msg=key)
    # The two no-data pixels of the unseen tile, and only they, have no probabilities.
    assert np.isnan(run.outputs["unseen"]).all(axis=1).sum() == 2
    assert not np.isnan(run.outputs["whole"]).any()
    labels = run.expected["whole"].argmax(axis=1)
    assert len(np.unique(labels)) > 1  # a trained model: the map is not one class


@pytest.mark.parametrize(("name", "fmt"), RUNS)
def test_the_sidecar_says_what_the_artefact_takes_and_gives(runs, bundles, name, fmt):
    facts, classifier = runs[name, fmt].facts, bundles[name].classifier
    h, w = classifier.window
    assert facts["format"] == fmt and facts["file"] == f"{name}.{fmt}"
    assert facts["class_names"] == NAMES and facts["window"] == [h, w]
    assert facts["halo"] == {
        "top": h // 2,
        "left": w // 2,
        "bottom": (h - 1) // 2,
        "right": (w - 1) // 2,
    }
    assert facts["bands"] == classifier.n_bands
    assert facts["input"].startswith("(1, B, H, W) float32 raw radiometry")
    assert 0 <= facts["max_abs_diff"] <= 1e-4 and facts["check_tile"] == [64, 64]
    assert facts["s3fn_version"] and facts["torch_version"] == torch.__version__
    pooled = name == "scene" and fmt == "pt2"
    assert facts["tile"]["dynamic"] and facts["tile"]["output_multiple"] == (4 if pooled else 1)
    if name == "object":
        assert facts["kind"] == "object" and facts["band_centres"] is None
        assert facts["voting"]["method"] == classifier.voting
        assert facts["voting"]["n_windows"] == classifier.n_windows
    else:
        assert facts["kind"] == "scene" and facts["voting"] is None
        np.testing.assert_allclose(facts["band_centres"], np.linspace(450, 950, SCENE_BANDS))
        assert facts["band_widths"] == [30.0] * SCENE_BANDS


def test_onnx_has_standard_ops_only_and_pt2_keeps_the_fused_ones(runs):
    for name in ("scene", "object", "linear"):
        graph = onnx.load(runs[name, "onnx"].out)
        domains = {node.domain for node in graph.graph.node}
        domains |= {function.domain for function in graph.functions}
        assert domains <= {"", "ai.onnx"}, domains
        assert "s3fn" not in {opset.domain for opset in graph.opset_import}
    targets = {
        name: {str(n.target) for n in load_exported(runs[name, "pt2"].out).graph.nodes}
        for name in ("scene", "object")
    }
    assert {"s3fn.conv3d_block.default", "s3fn.cosine_logits.default"} <= targets["scene"]
    assert "s3fn.conv3d_block.default" in targets["object"]


def test_a_pooled_pt2_refuses_a_tile_off_its_grid(runs, bundles):
    program = load_exported(runs["scene", "pt2"].out).module()
    with pytest.raises((AssertionError, RuntimeError)):
        program(torch.zeros(1, SCENE_BANDS, 21 + 14, 24 + 14))


def test_an_object_image_votes_from_the_map_as_predict_image(runs, bundles):
    bundle = bundles["object"]
    session = onnxruntime.InferenceSession(str(runs["object", "onnx"].out))
    windows = session.run(None, {"tile": as_input(bundle.cube)})[0][0]
    prediction = bundle.classifier.predict_image(bundle.cube)
    rows, cols = prediction.origins.T
    index, mean, votes = vote_one(windows[:, rows, cols].T, bundle.classifier.voting)
    assert index == prediction.index
    np.testing.assert_allclose(mean, prediction.probabilities, atol=1e-5)
    np.testing.assert_array_equal(votes, prediction.votes)


def test_a_failed_check_raises_and_leaves_no_file(bundles, tmp_path, monkeypatch):
    monkeypatch.setattr(export_module, "TOLERANCE", -1.0)
    folder = tmp_path / "out"
    with pytest.raises(ExportError, match=r"differs from predict_map by .* nothing was written"):
        export(bundles["linear"].folder, "pt2", folder / "linear.pt2")
    assert list(folder.iterdir()) == []


def test_bad_requests_get_one_line_errors(bundles, tmp_path, monkeypatch):
    folder = bundles["linear"].folder
    with pytest.raises(ValueError, match="format 'tflite'; expected one of onnx, pt2, aoti"):
        export(folder, "tflite", tmp_path / "m.tflite")
    with pytest.raises(FileNotFoundError, match="neither a run folder"):
        export(tmp_path / "nowhere", "pt2", tmp_path / "m.pt2")
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "classifier.json").write_text("{")
    with pytest.raises(S3FNDataError, match="not valid JSON"):
        export(broken, "pt2", tmp_path / "m.pt2")
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(ExportError, match="cannot write the export there"):
        export(folder, "pt2", blocker / "m.pt2")
    with pytest.raises(ValueError, match="check_tile=30; expected a multiple of 4"):
        export(bundles["scene"].folder, "pt2", tmp_path / "m.pt2", check_tile=30)
    found = export_module.importlib.util.find_spec
    monkeypatch.setattr(
        export_module.importlib.util,
        "find_spec",
        lambda name, *a: None if name == "onnxruntime" else found(name, *a),
    )
    with pytest.raises(ImportError, match=r"missing: onnxruntime.*pip install s3fn\[export\]"):
        export(folder, "onnx", tmp_path / "m.onnx")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["broken", "file"]


def test_the_command_exports_a_fixed_tile(bundles, tmp_path, capsys):
    bundle = bundles["scene"]
    out = tmp_path / "scene.pt2"
    assert (
        main(["export", str(bundle.folder), "--format", "pt2", "--out", str(out), "--tile", "10"])
        == 0
    )
    printed = capsys.readouterr().out
    assert "max |difference| from predict_map on a 10x10 check tile" in printed
    assert f"  {out}\n" in printed and f"  {out}.json\n" in printed
    facts = json.loads(sidecar_path(out).read_text())
    assert facts["tile"] == {"dynamic": False, "output": [10, 10]}
    program = load_exported(out).module()
    tile = mosaic(bundle.cube, 24, 24, seed=2)  # 10 + 14: one fixed tile, not on the grid of 4
    expected = probabilities(bundle.classifier, tile)[..., 7:17, 7:17]
    np.testing.assert_allclose(
        program(torch.from_numpy(as_input(tile))).numpy(), expected, atol=1e-4
    )
    with pytest.raises((AssertionError, RuntimeError)):
        program(torch.zeros(1, SCENE_BANDS, 28, 28))
    assert main(["export", str(tmp_path / "nowhere"), "--format", "onnx", "--out", str(out)]) == 1
    assert "s3fn: error:" in capsys.readouterr().err
