"""From window predictions to image predictions: majority vote or mean probability."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

VOTINGS = ("majority", "mean-prob")


@dataclass(frozen=True, eq=False)
class Votes:
    """Per group (image): its id, voted class, mean window probabilities and window vote counts."""

    groups: np.ndarray
    labels: np.ndarray
    probabilities: np.ndarray
    counts: np.ndarray


def vote_one(
    probabilities: np.ndarray, method: str = "majority"
) -> tuple[int, np.ndarray, np.ndarray]:
    """Vote over the windows of one image: (class, mean probabilities (K,), vote counts (K,)).

    "majority" (the paper): the class most windows predict; a tie goes to the tied class with
    the highest mean probability, then to the lowest class index. "mean-prob": the argmax of
    the mean probabilities (ties to the lowest index).
    """
    if method not in VOTINGS:
        raise ValueError(f"voting={method!r}; expected one of {', '.join(VOTINGS)}")
    probabilities = np.asarray(probabilities, dtype=np.float64)
    if probabilities.ndim != 2 or not len(probabilities):
        raise ValueError(
            f"voting: probabilities of shape {probabilities.shape}; expected n_windows x K, n >= 1"
        )
    mean = probabilities.mean(axis=0)
    counts = np.bincount(probabilities.argmax(axis=1), minlength=probabilities.shape[1])
    if method == "mean-prob":
        return int(mean.argmax()), mean, counts
    tied = np.where(counts == counts.max(), mean, -np.inf)
    return int(tied.argmax()), mean, counts


def vote(
    probabilities: np.ndarray, groups: Sequence | np.ndarray, method: str = "majority"
) -> Votes:
    """Vote within each group of windows (e.g. the windows of one image); see `vote_one`.

    `probabilities` is N x K (softmax outputs), `groups` N ids; groups come out sorted.
    """
    probabilities = np.asarray(probabilities)
    ids, inverse = np.unique(np.asarray(groups), return_inverse=True)
    if len(inverse) != len(probabilities):
        raise ValueError(
            f"voting: {len(probabilities)} windows but {len(inverse)} group ids; expected one each"
        )
    order = np.argsort(inverse, kind="stable")
    bounds = np.cumsum(np.bincount(inverse, minlength=len(ids)))[:-1]
    results = [vote_one(p, method) for p in np.split(probabilities[order], bounds)]
    return Votes(
        groups=ids,
        labels=np.array([r[0] for r in results], dtype=np.int64),
        probabilities=np.stack([r[1] for r in results]),
        counts=np.stack([r[2] for r in results]),
    )


def group_labels(labels: Sequence[int] | np.ndarray, groups: Sequence | np.ndarray) -> np.ndarray:
    """The true class of each group (sorted like `vote`); refuses groups with mixed labels."""
    labels = np.asarray(labels, dtype=np.int64)
    ids, start, inverse = np.unique(np.asarray(groups), return_index=True, return_inverse=True)
    first = labels[start]
    mixed = labels != first[inverse]
    if mixed.any():
        raise ValueError(
            f"voting: group {ids[inverse[np.argmax(mixed)]]!r} holds windows of different classes; "
            "expected one label per image"
        )
    return first
