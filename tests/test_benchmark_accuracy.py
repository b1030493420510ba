"""The accuracy benchmark's own logic: statistics, paired intervals, tables, the docs section,
the run plan and cache keys, corrupted descriptions, the baselines' inputs and the dataset
makers. Model accuracy is what the benchmark measures, not what these tests check."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

from benchmarks import accuracy_data as data
from benchmarks.accuracy import parse_args
from benchmarks.accuracy_plan import (
    DATASETS,
    LABELS,
    METHODS,
    OBJECT_TRAIN,
    QUICK,
    SEMANTIC_LABELS,
    SEMANTIC_METHODS,
    SEMANTIC_TRAIN,
    Cell,
    plan,
    select,
)
from benchmarks.accuracy_render import format_difference, mean_std, render, replace_section
from benchmarks.accuracy_stats import paired_difference, summaries_and_pairs, summarise
from benchmarks.description_corruption import corrupt
from benchmarks.sklearn_baselines import fit_linear, fit_svm, samples_of
from s3fn.data.datasets import ObjectDataset, SceneDataset
from s3fn.io.envi import header_for
from s3fn.semantics import Descriptions, load_descriptions
from s3fn.semantics.ablations import split_sentences


def _cell(status: str, seed: int, oa: float = 0.0, **extra: object) -> dict:
    base = {"dataset": "d", "method": "m", "train": 5.0, "seed": seed, "status": status}
    if status == "ok":
        base.update(oa=oa, aa=oa, kappa=oa - 0.1, train_seconds=10.0 + seed)
    else:
        base["reason"] = "why"
    return {**base, **extra}


def test_paired_difference_is_a_t_interval_over_common_seeds():
    a = {0: 0.80, 1: 0.90, 2: 0.85}
    b = {0: 0.70, 1: 0.85, 2: 0.80, 3: 0.50}
    diff = paired_difference(a, b)
    assert diff is not None and diff.seeds == [0, 1, 2]
    assert diff.diffs == pytest.approx([0.10, 0.05, 0.05])
    sd = np.std([0.10, 0.05, 0.05], ddof=1)
    half = stats.t.ppf(0.975, 2) * sd / math.sqrt(3)
    low, high = diff.interval()
    assert diff.mean == pytest.approx(0.2 / 3)
    assert (low, high) == pytest.approx((0.2 / 3 - half, 0.2 / 3 + half))
    assert diff.to_dict()["low"] == pytest.approx(low)


def test_paired_difference_edge_cases():
    assert paired_difference({0: 1.0}, {1: 1.0}) is None
    one = paired_difference({0: 0.9}, {0: 0.8})
    assert one.interval() is None and one.to_dict()["high"] is None
    same = paired_difference({0: 0.9, 1: 0.8}, {0: 0.8, 1: 0.7})
    assert same.interval() == pytest.approx((0.1, 0.1))


def test_summarise_counts_and_sample_std():
    cells = [_cell("ok", 0, 0.8), _cell("ok", 1, 0.9), _cell("failed", 2), _cell("unavailable", 3)]
    s = summarise(cells)
    assert s["seeds"] == [0, 1] and s["failed"] == 1 and s["unavailable"] == 1
    assert s["mean"]["oa"] == pytest.approx(0.85)
    assert s["std"]["oa"] == pytest.approx(np.std([0.8, 0.9], ddof=1))
    assert s["mean"]["train_seconds"] == pytest.approx(10.5)
    assert mean_std(s, "oa", factor=100, digits=2) == "85.00 ± 7.07"
    single = summarise([_cell("ok", 0, 0.8)])
    assert mean_std(single, "oa", factor=100, digits=1) == "80.0"
    assert mean_std(summarise([_cell("failed", 0)]), "oa", factor=1, digits=1) == "-"


def test_summaries_pair_default_with_every_other_method():
    results = [
        _cell("ok", 0, 0.9, method="default"),
        _cell("ok", 1, 0.8, method="default"),
        _cell("ok", 0, 0.7, method="linear"),
        _cell("ok", 1, 0.7, method="linear"),
        _cell("failed", 0, method="paper"),
    ]
    (group,) = summaries_and_pairs(results)
    assert list(group["methods"]) == ["default", "linear", "paper"]
    assert group["paired"]["linear"]["diffs"] == pytest.approx([0.2, 0.1])
    assert group["paired"]["paper"] is None
    summary, paired = render([group], LABELS, with_train=False)
    lines = summary.splitlines()
    assert lines[0].startswith("| dataset | protocol | method | OA (%)") and len(lines) == 5
    assert lines[-1].endswith("| - | - | - | - | 0 (1 failed, 0 unavailable) |")
    assert "| d | blocks | softmax regression on spectra | +15.00 |" in paired
    assert "+20.00, +10.00" in paired
    summary, _ = render([group], SEMANTIC_LABELS, with_train=True)
    assert summary.splitlines()[2].startswith("| d | 5 | S3FN |")


def test_format_difference():
    assert format_difference(None) == ("-", "-", "0", "-")
    diff = paired_difference({0: 0.9}, {0: 0.85}).to_dict()
    assert format_difference(diff) == ("+5.00", "-", "1", "+5.00")


def test_replace_section_appends_then_replaces_in_place():
    text = "# Results\n\nintro\n"
    once = replace_section(text, "accuracy", "table 1")
    assert once == "# Results\n\nintro\n\n<!-- accuracy:begin -->\ntable 1\n<!-- accuracy:end -->\n"
    twice = replace_section(once + "\nafter\n", "accuracy", "table 2\n")
    assert "table 1" not in twice and twice.endswith("<!-- accuracy:end -->\n\nafter\n")
    both = replace_section(twice, "semantics", "other")
    assert replace_section(both, "accuracy", "table 2") == both


def test_plan_runs_default_first_per_seed():
    cells = plan(["a"], ["linear", "default"], 2, {"a": [(5.0, 2.0, "blocks")]})
    assert [(c.method, c.seed) for c in cells] == [
        ("default", 0),
        ("linear", 0),
        ("default", 1),
        ("linear", 1),
    ]
    cells = plan(["a"], ["cnn"], 1, {"a": [(3.0, 2.0, "blocks"), (5.0, 2.0, "blocks")]})
    assert [(c.method, c.train) for c in cells] == [
        ("default", 3.0),
        ("cnn", 3.0),
        ("default", 5.0),
        ("cnn", 5.0),
    ]


def test_cell_keys_name_the_recipe():
    cell = Cell("moffett", "cnn", 1, 0.6, 0.2)
    key = cell.key({})
    assert key.startswith("moffett-blocks-cnn-t0.6-v0.2-s1-") and key == cell.key({})
    region = Cell("moffett", "cnn", 1, None, 0.2, "west")
    assert region.key({}).startswith("moffett-west-cnn-trest-v0.2-s1-")
    assert key != cell.key({"epochs": 1})
    assert cell.default_cell() == Cell("moffett", "default", 1, 0.6, 0.2)


def _descriptions() -> Descriptions:
    return Descriptions(
        {
            "soil": ["Soil is bare ground. Soil has no red edge.", "Wet soil is dark."],
            "water": ["Water is dark in the near infrared. Water absorbs."],
            "tree": ["A tree has a red edge. The tree canopy is bright."],
        }
    )


def test_corruptions_keep_the_classes():
    original = _descriptions()
    first = corrupt(original, "first-sentence", 0)
    assert first.names == original.names
    assert first["soil"] == ("Soil is bare ground.",)
    assert all(len(split_sentences(first[n][0])) == 1 for n in first.names)
    swapped = corrupt(original, "swapped", 0)
    assert all("water" in p.lower() for p in swapped["water"]) and swapped != original
    assert swapped["water"][0] != original["water"][0]
    mixed = corrupt(original, "mixed", 0)
    assert mixed.names == original.names and mixed != original
    with pytest.raises(ValueError, match="unknown corruption"):
        corrupt(original, "nonsense", 0)


def test_real_scene_descriptions_cover_their_classes():
    descriptions = load_descriptions(data.REAL_DESCRIPTIONS)
    names = {"rock", "tree", "water", "dirt", "road", "soil", "vegetation"}
    assert names <= set(descriptions.names)
    for name in names:
        assert len(descriptions[name]) >= 3
        assert all(name in p.lower() for p in descriptions[name]), name


def test_class_names_of_real_scenes():
    assert [data.class_name(n) for n in ("1-rock", "2-Tree", " water", "4-road")] == [
        "rock",
        "tree",
        "water",
        "road",
    ]


def test_raw_band_set_fills_the_gaps_with_weak_noisy_bands():
    wavelengths = np.concatenate([np.arange(400, 1351, 10), np.arange(1460, 2451, 10)]).astype(
        float
    )
    image = np.full((4, 5, len(wavelengths)), 0.5)
    raw, centres = data.raw_band_set(image, wavelengths, np.random.default_rng(0))
    assert np.array_equal(centres, np.arange(400, 2451, 10))
    kept = np.isin(centres, wavelengths)
    assert np.array_equal(raw[..., kept], image)
    filled = raw[..., ~kept]
    assert filled.shape[-1] == 10
    assert abs(filled.mean() - data.WATER_TRANSMISSION * 0.5) < 0.01
    assert filled.std() > 0.5 * data.WATER_NOISE
    assert data.to_dn(np.array([-0.1, 0.25, 7.0])).tolist() == [0, 2500, 65535]


def test_small_objects_are_small_raw_and_masked(tmp_path: Path):
    classes = ("soil", "wood")
    folder = data.write_small_objects(tmp_path / "small", images_per_class=2, classes=classes)
    assert data.write_small_objects(folder, images_per_class=2, classes=classes) == folder
    dataset = ObjectDataset.from_folder(folder)
    assert dataset.class_names == ["soil", "wood"] and dataset.labels.tolist() == [0, 0, 1, 1]
    for i in range(len(dataset)):
        sample = dataset[i]
        side = sample.cube.shape[0]
        assert sample.cube.shape == (side, side, 206)
        assert data.SMALL_IMAGE_SIZES[0] <= side <= data.SMALL_IMAGE_SIZES[1]
        rows, cols = np.nonzero(sample.mask)
        extent = max(np.ptp(rows), np.ptp(cols)) + 1
        assert extent <= data.SMALL_OBJECT_SIZES[1]
        assert sample.cube.data[~sample.mask].sum(-1).min() > 0  # a dim background, not zeros
        assert sample.cube.data.max() > 100  # digital numbers, not reflectance
    header = header_for(dataset.images[0].path).read_text()
    assert "data type = 12" in header and "reflectance scale factor" not in header


def test_real_scene_files_and_baseline_samples(tmp_path: Path):
    cube = np.random.default_rng(0).random((6, 5, 4)).astype(np.float32)
    labels = np.zeros((6, 5), dtype=np.uint8)
    labels[:3, :2], labels[3:, 3:] = 1, 2
    npz = tmp_path / "samson.npz"
    np.savez(npz, cube=cube, labels_pure0p6=labels, endmember_names=np.array(["1-rock", "2-Tree"]))
    scene = data.real_scene_data("samson", tmp_path, tmp_path / "cache")
    assert scene.classes == ("rock", "tree") and scene.kind == data.SCENE_KIND
    opened = SceneDataset.from_files(scene.data, scene.labels, list(scene.classes))
    assert np.array_equal(opened.cube.data, cube) and np.array_equal(opened.labels, labels)
    x, y = samples_of(opened, np.array([[0, 0], [4, 4]]), {})
    x_test, y_test = samples_of(opened, np.array([[1, 1], [5, 3], [2, 0]]), {})
    assert np.array_equal(x, cube[[0, 4], [0, 4]]) and y.tolist() == [0, 1]
    assert x_test.shape == (3, 4) and y_test.tolist() == [0, 1, 0]
    with pytest.raises(FileNotFoundError):
        data.real_scene_data("moffett", tmp_path, tmp_path / "cache")


def test_object_samples_use_each_image_mean_spectrum():
    class Tiny(ObjectDataset):
        def __init__(self) -> None:
            self.image_ids = ["a/1", "a/2", "b/1"]
            self.labels = np.array([0, 0, 1])
            self.class_names = ["a", "b"]

    spectra = {"a/1": np.array([1.0, 0.0]), "a/2": np.array([2.0, 0.0]), "b/1": np.ones(2)}
    x, y = samples_of(Tiny(), np.array([2, 0]), spectra)
    x_test, y_test = samples_of(Tiny(), np.array([1]), spectra)
    assert x.tolist() == [[1.0, 1.0], [1.0, 0.0]] and y.tolist() == [1, 0]
    assert x_test.tolist() == [[2.0, 0.0]] and y_test.tolist() == [0]


@pytest.mark.parametrize("fit", [fit_linear, fit_svm])
def test_baselines_separate_separable_spectra(fit):
    rng = np.random.default_rng(0)
    centres = np.array([[0.2, 0.5, 0.8], [0.8, 0.5, 0.2], [0.5, 0.9, 0.5]])
    y = np.repeat(np.arange(3), 6)
    x = centres[y] + 0.02 * rng.standard_normal((len(y), 3))
    model = fit(x, y, 0)
    assert (model.predict(centres) == np.arange(3)).all()


def test_selection_of_tables_datasets_and_methods():
    quick = select(parse_args(["--quick"]))
    assert quick.table == "accuracy" and quick.datasets == list(QUICK.datasets)
    assert quick.seeds == QUICK.seeds and quick.methods == list(METHODS)
    some = select(parse_args(["--methods", "linear", "--seeds", "3"]))
    assert some.methods == ["default", "linear"] and some.seeds == 3
    assert some.datasets == list(DATASETS) and some.counts == (OBJECT_TRAIN,)
    semantic = select(parse_args(["--semantics", "--datasets", "moffett", "materials"]))
    assert semantic.table == "semantics" and semantic.datasets == ["materials"]
    assert list(semantic.skipped) == ["moffett"] and semantic.counts == SEMANTIC_TRAIN
    assert semantic.methods == list(SEMANTIC_METHODS)
    with pytest.raises(SystemExit):
        parse_args(["--semantics", "--methods", "cnn"])


def test_the_recorded_command_names_no_folder_of_this_machine():
    from benchmarks.accuracy import portable_command

    argv = ["--quick", "--work", "/tmp/cache", "--real-data=/data/real", "--cached-only"]
    argv += ["--datasets", "moffett", "--output", "/tmp/a.json", "--docs", "x.md", "--fresh"]
    assert portable_command(argv) == "python -m benchmarks.accuracy --quick --datasets moffett"


def test_the_results_page_names_no_folder_of_a_machine():
    import re
    from pathlib import Path

    text = (Path(__file__).resolve().parents[1] / "docs" / "results.md").read_text()
    assert re.findall(r"(?<![\w.~])/(?:tmp|work|root|home|mnt|Users)/\S*", text) == []


def test_protocol_verdicts_average_the_datasets_and_name_those_behind():
    from benchmarks.accuracy_stats import protocol_verdicts

    def group(name: str, protocol: str, diffs: list[float] | None) -> dict:
        pair = None if diffs is None else {"mean": sum(diffs) / len(diffs), "diffs": diffs}
        return {"dataset": name, "protocol": protocol, "paired": {"linear": pair}}

    groups = [
        group("a", "west", [0.01, 0.03]),
        group("b", "west", [-0.02, -0.04]),
        group("c", "west", [-0.004, -0.004]),
        group("a", "blocks", None),
    ]
    verdicts = protocol_verdicts(groups, "linear")
    assert list(verdicts) == ["west"]
    assert verdicts["west"]["average"] == pytest.approx((0.02 - 0.03 - 0.004) / 3)
    assert verdicts["west"]["behind"] == ["b"]  # c is within 0.5 points
