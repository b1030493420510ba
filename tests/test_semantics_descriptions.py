"""Descriptions: the file format, the loader's errors, and the bundled descriptions."""

from __future__ import annotations

import json

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from s3fn.semantics import (
    Descriptions,
    DescriptionsError,
    bundled_descriptions,
    bundled_names,
    load_descriptions,
    parse_descriptions,
    save_descriptions,
)

MATERIALS = [
    "soil",
    "green vegetation",
    "asphalt",
    "composition shingle",
    "concrete",
    "paint",
    "wood",
    "plant litter",
]


def write(path, data) -> str:
    path.write_text(json.dumps(data) if path.suffix == ".json" else yaml.safe_dump(data))
    return str(path)


@pytest.mark.parametrize("suffix", [".json", ".yaml", ".yml"])
def test_save_load_round_trip_keeps_order_and_meta(tmp_path, suffix):
    original = Descriptions(
        {"wood": ["Wood is brown.", "Dry wood: 2.1 µm."], "asphalt": ["Asphalt is dark."]},
        {"source": "test", "n": 2},
    )
    path = save_descriptions(tmp_path / f"d{suffix}", original)
    loaded = load_descriptions(path)
    assert loaded == original
    assert loaded.names == ["wood", "asphalt"]
    assert loaded.source == str(path)


def test_paragraphs_are_stripped_and_immutable():
    d = Descriptions({"soil": ["  Soil is brown.\n"]})
    assert d["soil"] == ("Soil is brown.",)
    assert len(d) == 1 and list(d) == ["soil"]


def test_equality_includes_class_order():
    ab = Descriptions({"a": ["x"], "b": ["y"]})
    assert ab == Descriptions({"a": ["x"], "b": ["y"]}, source="elsewhere")
    assert ab != Descriptions({"b": ["y"], "a": ["x"]})
    assert ab != Descriptions({"a": ["x"], "b": ["y"]}, {"note": 1})


def test_load_with_classes_orders_and_checks(tmp_path):
    path = write(tmp_path / "d.json", {"classes": {"a": ["x a"], "b": ["y b"], "c": ["z c"]}})
    assert load_descriptions(path, classes=["c", "a"]).names == ["c", "a"]
    with pytest.raises(DescriptionsError, match=r"d\.json: classes: missing 'zz'"):
        load_descriptions(path, classes=["a", "zz"])


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"classes": {"soil": []}}, r"classes\.soil: expected at least one paragraph"),
        ({"classes": {"soil": "Soil."}}, r"classes\.soil: expected a list of paragraphs, got str"),
        (
            {"classes": {"soil": ["ok", 3]}},
            r"classes\.soil\[1\]: expected a non-empty string, "
            r"got int",
        ),
        ({"classes": {"soil": ["ok", "  "]}}, r"classes\.soil\[1\]: expected a non-empty string"),
        ({"classes": {}}, r"classes: expected at least one class"),
        ({"classes": ["soil"]}, r"classes: expected a mapping"),
        ({"classes": {" soil": ["x"]}}, r"leading or trailing whitespace"),
        ({"classes": {"soil": ["x"]}, "extra": 1}, r"unknown key 'extra'"),
        ({"meta": {}}, r"classes: missing"),
        ({"classes": {"soil": ["x"]}, "meta": [1]}, r"meta: expected a mapping, got list"),
        (["soil"], r"expected a mapping with keys 'classes' and 'meta', got list"),
    ],
)
@pytest.mark.parametrize("suffix", [".json", ".yaml"])
def test_loader_errors_name_file_field_and_expectation(tmp_path, data, message, suffix):
    path = write(tmp_path / f"bad{suffix}", data)
    with pytest.raises(DescriptionsError, match=message) as info:
        load_descriptions(path)
    assert str(info.value).startswith(path)
    assert "\n" not in str(info.value)


def test_duplicate_class_is_an_error_in_json_and_yaml(tmp_path):
    (tmp_path / "d.json").write_text('{"classes": {"soil": ["a"], "soil": ["b"]}}')
    (tmp_path / "d.yaml").write_text("classes:\n  soil: [a]\n  soil: [b]\n")
    for name in ("d.json", "d.yaml"):
        with pytest.raises(DescriptionsError, match="duplicate key 'soil'"):
            load_descriptions(tmp_path / name)


def test_unreadable_files_get_one_line_errors(tmp_path):
    (tmp_path / "d.json").write_text('{"classes": {')
    with pytest.raises(DescriptionsError, match=r"d\.json: invalid JSON at line 1"):
        load_descriptions(tmp_path / "d.json")
    (tmp_path / "d.yaml").write_text("classes: [unclosed\n")
    with pytest.raises(DescriptionsError, match=r"d\.yaml: invalid YAML") as info:
        load_descriptions(tmp_path / "d.yaml")
    assert "\n" not in str(info.value)
    with pytest.raises(DescriptionsError, match=r"expected a \.json, \.yaml or \.yml"):
        load_descriptions(tmp_path / "d.txt")
    with pytest.raises(DescriptionsError, match="cannot read descriptions file"):
        load_descriptions(tmp_path / "missing.json")


def test_select_rejects_duplicates():
    d = parse_descriptions({"classes": {"a": ["a"], "b": ["b"]}})
    with pytest.raises(DescriptionsError, match="duplicate"):
        d.select(["a", "a"])


_text = st.text(st.characters(categories=("L", "N", "P", "Zs")), min_size=1, max_size=40)
_names = _text.map(str.strip).filter(bool)
_paragraphs = st.lists(_text.filter(str.strip), min_size=1, max_size=3)


@settings(max_examples=25, deadline=None)
@given(classes=st.dictionaries(_names, _paragraphs, min_size=1, max_size=4))
def test_round_trip_property(tmp_path_factory, classes):
    original = Descriptions(classes, {"note": "hypothesis"})
    folder = tmp_path_factory.mktemp("rt")
    for suffix in (".json", ".yaml"):
        assert load_descriptions(save_descriptions(folder / f"d{suffix}", original)) == original


def test_bundled_materials_cover_the_builtin_classes():
    assert "materials" in bundled_names()
    d = bundled_descriptions("materials")
    assert d.names == MATERIALS
    for name in d.names:
        assert 8 <= len(d[name]) <= 10
        for paragraph in d[name]:
            assert name in paragraph.lower(), (name, paragraph)
            assert len(paragraph.split()) >= 40
    assert d.meta["source"] == "written for s3fn, in the style of the S3FN prompt"
    assert "0.4-2.45 µm" in d.meta["spectral_range"]


def test_unknown_bundled_set():
    with pytest.raises(DescriptionsError, match="unknown set 'nope'; available: materials"):
        bundled_descriptions("nope")
