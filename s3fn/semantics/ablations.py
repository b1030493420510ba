"""Seeded, pure transforms of descriptions for robustness ablations.

Each returns new `Descriptions` with the same classes in the same order and appends a record
of what was done to `meta["ablations"]`; the input is never modified. With `rename=True`,
text moved from class A to class B has A's name replaced by B's (plural "s" kept), so that
label-token pooling still finds B's name, now in A's context.
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np

from s3fn.semantics.descriptions import Descriptions

# A sentence ends at . ! or ? followed by whitespace and an upper-case letter, a quote or
# a parenthesis; decimal numbers ("2.2 µm") and "e.g. the" do not end one.
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z\"'(])")


def split_sentences(paragraph: str) -> list[str]:
    """The sentences of a paragraph (see `_SENTENCE_END` for the rule)."""
    return [s for s in _SENTENCE_END.split(paragraph.strip()) if s]


def rename_class(text: str, old: str, new: str) -> str:
    """`text` with whole-word, case-insensitive mentions of `old` replaced by `new`."""
    pattern = re.compile(r"(?<!\w)" + re.escape(old) + r"(?=s?(?!\w))", re.IGNORECASE)
    return pattern.sub(new, text)


def _with_record(
    descriptions: Descriptions, classes: dict[str, list[str]], record: dict[str, Any]
) -> Descriptions:
    meta = dict(descriptions.meta)
    meta["ablations"] = [*meta.get("ablations", []), record]
    return Descriptions(classes, meta, descriptions.source)


def _derangement(k: int, rng: np.random.Generator) -> list[int]:
    """A uniformly random permutation of range(k) with no fixed point (k >= 2)."""
    while True:
        perm = rng.permutation(k)
        if not np.any(perm == np.arange(k)):
            return perm.tolist()


def shuffle_descriptions(
    descriptions: Descriptions, seed: int, *, rename: bool = True
) -> Descriptions:
    """Give every class the paragraphs of another class (a random derangement, seeded).

    With one class there is nothing to swap and the descriptions come back unchanged.
    """
    names = descriptions.names
    if len(names) < 2:
        return descriptions
    perm = _derangement(len(names), np.random.default_rng(seed))
    classes = {}
    for name, j in zip(names, perm, strict=True):
        donor = names[j]
        paragraphs = descriptions[donor]
        classes[name] = [rename_class(p, donor, name) if rename else p for p in paragraphs]
    mapping = {name: names[j] for name, j in zip(names, perm, strict=True)}
    return _with_record(
        descriptions, classes, {"kind": "shuffle", "seed": seed, "rename": rename, "from": mapping}
    )


def mix_sentences(
    descriptions: Descriptions, fraction: float, seed: int, *, rename: bool = True
) -> Descriptions:
    """Replace `fraction` of each class's sentences with random sentences of other classes.

    In each class, round(fraction * n_sentences) sentences, chosen at random, are each
    replaced by a sentence drawn from the pooled sentences of all the other classes; paragraph
    boundaries are kept. `fraction` is in [0, 1]; 0 returns the text unchanged.
    """
    if not 0.0 <= fraction <= 1.0:
        raise ValueError(f"mix_sentences: fraction must be in [0, 1], got {fraction}")
    names = descriptions.names
    if fraction > 0 and len(names) < 2:
        raise ValueError("mix_sentences: needs at least two classes to borrow sentences from")
    rng = np.random.default_rng(seed)
    sentences = {n: [split_sentences(p) for p in descriptions[n]] for n in names}
    classes = {}
    for name in names:
        own = [(i, j) for i, para in enumerate(sentences[name]) for j in range(len(para))]
        count = round(fraction * len(own))
        pool = [
            (other, s)
            for other in names
            if other != name
            for para in sentences[other]
            for s in para
        ]
        paragraphs = [list(para) for para in sentences[name]]
        for slot in rng.choice(len(own), size=count, replace=False):
            donor, sentence = pool[rng.integers(len(pool))]
            i, j = own[slot]
            paragraphs[i][j] = rename_class(sentence, donor, name) if rename else sentence
        classes[name] = [" ".join(para) for para in paragraphs]
    return _with_record(
        descriptions,
        classes,
        {"kind": "mix_sentences", "fraction": fraction, "seed": seed, "rename": rename},
    )


def name_only(descriptions: Descriptions) -> Descriptions:
    """Each class described by its bare name, one paragraph: the no-description baseline."""
    classes = {name: [name] for name in descriptions.names}
    return _with_record(descriptions, classes, {"kind": "name_only"})
