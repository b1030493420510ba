"""The description prompt template and the reply parser."""

from __future__ import annotations

import pytest

from s3fn.semantics import PROMPT_TEMPLATE, SYSTEM_PROMPT, build_messages, build_prompt
from s3fn.semantics.prompts import parse_paragraphs

CLASSES = ["soil", "green vegetation", "asphalt"]


def test_prompt_names_the_class_the_others_the_range_and_the_count():
    prompt = build_prompt(
        "soil", CLASSES, n_paragraphs=7, spectral_range="0.4-2.45 µm", context="urban materials"
    )
    assert prompt.startswith("Write 7 detailed, fact-based paragraphs about soil,")
    assert "the other classes: green vegetation, asphalt." in prompt
    assert "0.4-2.45 µm range" in prompt
    assert "Domain context: urban materials." in prompt
    assert 'mention "soil" by name' in prompt


def test_prompt_with_a_single_class_and_custom_template():
    assert "classes: (none)." in build_prompt("soil", ["soil"])
    template = "{class_name} vs {other_classes} in {n_paragraphs}"
    assert build_prompt("asphalt", CLASSES, template=template, n_paragraphs=2) == (
        "asphalt vs soil, green vegetation in 2"
    )


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"class_name": "wood"}, "class 'wood' is not among classes"),
        ({"n_paragraphs": 0}, "n_paragraphs must be >= 1"),
        ({"template": "{class_name} {colour}"}, "unknown field 'colour'"),
    ],
)
def test_prompt_errors(kwargs, message):
    args = {"class_name": "soil", "classes": CLASSES} | kwargs
    with pytest.raises(ValueError, match=message):
        build_prompt(**args)


def test_messages_carry_the_paper_system_prompt():
    messages = build_messages("hello")
    assert messages == [
        {"role": "system", "content": SYSTEM_PROMPT},
        {"role": "user", "content": "hello"},
    ]
    assert "{class_name}" in PROMPT_TEMPLATE


@pytest.mark.parametrize(
    "reply",
    [
        "First about soil.\n\nSecond about soil\ncontinued.\n\n\nThird about soil.",
        "Here are three paragraphs about soil:\n\n1. First about soil.\n"
        "2. Second about soil\ncontinued.\n3) Third about soil.",
        "# Soil\n**Paragraph 1:** First about soil.\n\n**Paragraph 2:** Second about soil "
        "continued.\n\n- Third about soil.",
    ],
)
def test_parse_paragraphs(reply):
    assert parse_paragraphs(reply) == [
        "First about soil.",
        "Second about soil continued.",
        "Third about soil.",
    ]


def test_parse_keeps_numbers_that_are_not_markers():
    reply = "2.2 µm is where soil clays absorb.\n\n1.4 and 1.9 µm bands are water."
    assert parse_paragraphs(reply) == [
        "2.2 µm is where soil clays absorb.",
        "1.4 and 1.9 µm bands are water.",
    ]
    assert parse_paragraphs("   \n\n") == []
