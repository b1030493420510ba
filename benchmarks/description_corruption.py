"""Corrupted class descriptions for the semantics study of `benchmarks.accuracy`: the same
classes described by mixed, truncated or swapped text."""

from __future__ import annotations

from s3fn.semantics import Descriptions, mix_sentences, shuffle_descriptions
from s3fn.semantics.ablations import split_sentences

CORRUPTIONS = ("mixed", "first-sentence", "swapped")
MIXED_FRACTION = 0.5


def first_sentences(descriptions: Descriptions) -> Descriptions:
    """Each class described by the first sentence of its first paragraph only."""
    classes = {n: [split_sentences(descriptions[n][0])[0]] for n in descriptions.names}
    meta = dict(descriptions.meta)
    meta["ablations"] = [*meta.get("ablations", []), {"kind": "first_sentence"}]
    return Descriptions(classes, meta, descriptions.source)


def corrupt(descriptions: Descriptions, method: str, seed: int) -> Descriptions:
    """The descriptions of corruption `method` ("mixed", "first-sentence" or "swapped")."""
    if method == "mixed":
        return mix_sentences(descriptions, MIXED_FRACTION, seed)
    if method == "first-sentence":
        return first_sentences(descriptions)
    if method == "swapped":
        return shuffle_descriptions(descriptions, seed)
    raise ValueError(f"corrupt: unknown corruption {method!r}; expected one of {CORRUPTIONS}")
