"""How sure a validation part is that one model beats another: a bootstrap over its units
(whole fields of a scene, images of object data), not its pixels, since the pixels of one
field succeed or fail together and count as one piece of evidence."""

from __future__ import annotations

import numpy as np

RESAMPLES = 2000


def advantage_lower_bound(
    units: np.ndarray,
    first_hits: np.ndarray,
    second_hits: np.ndarray,
    *,
    confidence: float = 0.95,
    resamples: int = RESAMPLES,
    seed: int = 0,
) -> float:
    """One-sided lower bound, at `confidence`, of the first model's OA minus the second's on
    the same samples: `units` gives each sample's unit and `*_hits` whether each model
    classified it right; units are drawn with replacement, each with all its samples."""
    units = np.asarray(units)
    if not len(units) or not (len(units) == len(first_hits) == len(second_hits)):
        raise ValueError(
            f"advantage_lower_bound: {len(units)} units, {len(first_hits)} and "
            f"{len(second_hits)} hits; expected the same number, at least one"
        )
    if not 0 < confidence < 1:
        raise ValueError(f"advantage_lower_bound: confidence={confidence}; expected 0 < c < 1")
    ids, index = np.unique(units, return_inverse=True)
    counts = np.bincount(index, minlength=len(ids)).astype(np.float64)
    gains = np.bincount(
        index,
        weights=np.asarray(first_hits, np.float64) - np.asarray(second_hits, np.float64),
        minlength=len(ids),
    )
    draws = np.random.default_rng(seed).integers(0, len(ids), (resamples, len(ids)))
    advantages = gains[draws].sum(axis=1) / counts[draws].sum(axis=1)
    return float(np.quantile(advantages, 1.0 - confidence))
