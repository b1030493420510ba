"""Ablation transforms of descriptions: shuffle (a derangement), sentence mixing, name only."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from s3fn.semantics import (
    Descriptions,
    bundled_descriptions,
    mix_sentences,
    name_only,
    shuffle_descriptions,
)
from s3fn.semantics.ablations import rename_class, split_sentences


def toy(k: int) -> Descriptions:
    return Descriptions(
        {
            f"class{i}": [f"Class{i} is item {i}. It has trait {i}.", f"More on class{i}."]
            for i in range(k)
        },
        {"source": "toy"},
    )


@settings(max_examples=30, deadline=None)
@given(k=st.integers(2, 9), seed=st.integers(0, 2**32 - 1))
def test_shuffle_is_a_seeded_derangement(k, seed):
    d = toy(k)
    shuffled = shuffle_descriptions(d, seed, rename=False)
    assert shuffled.names == d.names
    mapping = shuffled.meta["ablations"][-1]["from"]
    assert sorted(mapping.values()) == sorted(d.names)
    for name in d.names:
        assert mapping[name] != name
        assert shuffled[name] == d[mapping[name]]
    assert shuffle_descriptions(d, seed, rename=False) == shuffled


def test_shuffle_renames_the_donor_class_and_keeps_the_input():
    d = bundled_descriptions()
    before = d.to_dict()
    shuffled = shuffle_descriptions(d, seed=3)
    assert d.to_dict() == before
    for name, donor in shuffled.meta["ablations"][-1]["from"].items():
        for mine, theirs in zip(shuffled[name], d[donor], strict=True):
            assert mine == rename_class(theirs, donor, name)
            assert name in mine.lower()
    assert shuffled.meta["source"] == d.meta["source"]
    assert shuffle_descriptions(d, seed=4) != shuffled


def test_shuffle_of_one_class_is_the_identity():
    d = toy(1)
    assert shuffle_descriptions(d, 0) is d


def test_rename_class_is_whole_word_case_insensitive_and_keeps_plurals():
    text = "Paint and paints differ from painted wood; PAINT is bright."
    assert rename_class(text, "paint", "soil") == (
        "soil and soils differ from painted wood; soil is bright."
    )
    assert rename_class("Composition shingles age.", "composition shingle", "wood") == (
        "woods age."
    )


def test_split_sentences_keeps_decimals_and_abbreviations():
    text = "Soil absorbs at 2.2 µm, e.g. in clays. Iron oxides absorb near 0.9 µm! Is it wet? Yes."
    assert split_sentences(text) == [
        "Soil absorbs at 2.2 µm, e.g. in clays.",
        "Iron oxides absorb near 0.9 µm!",
        "Is it wet?",
        "Yes.",
    ]


def sentence_owners(d: Descriptions) -> dict[str, str]:
    return {s: name for name in d.names for p in d[name] for s in split_sentences(p)}


@pytest.mark.parametrize("fraction", [0.0, 0.3, 0.5, 1.0])
def test_mix_sentences_replaces_the_asked_fraction(fraction):
    d = bundled_descriptions()
    owners = sentence_owners(d)
    mixed = mix_sentences(d, fraction, seed=7, rename=False)
    assert mixed.names == d.names
    for name in d.names:
        assert len(mixed[name]) == len(d[name])
        own = [s for p in d[name] for s in split_sentences(p)]
        new = [s for p in mixed[name] for s in split_sentences(p)]
        assert len(new) == len(own)
        foreign = sum(owners[s] != name for s in new)
        assert foreign == round(fraction * len(own))
    assert mix_sentences(d, fraction, seed=7, rename=False) == mixed
    assert mixed.meta["ablations"] == [
        {"kind": "mix_sentences", "fraction": fraction, "seed": 7, "rename": False}
    ]


def test_mix_sentences_renames_borrowed_sentences():
    d = toy(3)
    mixed = mix_sentences(d, 1.0, seed=0)
    for name in d.names:
        text = " ".join(mixed[name]).lower()
        assert name in text
        assert not any(other in text for other in d.names if other != name)


def test_mix_sentences_rejects_bad_arguments():
    with pytest.raises(ValueError, match=r"fraction must be in \[0, 1\], got 1.5"):
        mix_sentences(toy(2), 1.5, seed=0)
    with pytest.raises(ValueError, match="at least two classes"):
        mix_sentences(toy(1), 0.5, seed=0)


def test_name_only_and_chained_records():
    d = shuffle_descriptions(toy(3), 1)
    only = name_only(d)
    assert only.to_dict()["classes"] == {n: [n] for n in d.names}
    assert [r["kind"] for r in only.meta["ablations"]] == ["shuffle", "name_only"]
