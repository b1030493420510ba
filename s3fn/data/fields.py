"""Fields of a label map: its 8-connected regions of one class, as a user labels a scene (the
fields they walked). Holding out whole fields gives a validation part that sees how one field
differs from another, which validation blocks cut from the training fields cannot see."""

from __future__ import annotations

import numpy as np

FIELD_SLACK = 1.5  # a field may take a class's held-out share up to this multiple of its target


def label_fields(labels: np.ndarray) -> np.ndarray:
    """Field index (0..F-1) of every labelled pixel of a 2-D label map, -1 elsewhere: pixels
    of one class that touch, diagonals included, share a field."""
    labels = np.asarray(labels)
    height, width = labels.shape
    flat = labels.ravel()
    index = np.arange(flat.size).reshape(height, width)
    firsts, seconds = [], []
    for dr, dc in ((0, 1), (1, 0), (1, 1), (1, -1)):
        start, stop = max(0, -dc), width - max(0, dc)
        here = index[: height - dr, start:stop]
        there = index[dr:, start + dc : stop + dc]
        same = (flat[here] > 0) & (flat[here] == flat[there])
        firsts.append(here[same])
        seconds.append(there[same])
    first, second = np.concatenate(firsts), np.concatenate(seconds)
    parent = np.arange(flat.size)
    while True:
        a, b = parent[first], parent[second]
        differ = a != b
        if not differ.any():
            break
        np.minimum.at(parent, np.maximum(a, b)[differ], np.minimum(a, b)[differ])
        while True:  # point every pixel at its root, so the next hooks join roots only
            root = parent[parent]
            if np.array_equal(root, parent):
                break
            parent = root
    fields = np.full(flat.size, -1, dtype=np.int64)
    labelled = flat > 0
    fields[labelled] = np.unique(parent[labelled], return_inverse=True)[1]
    return fields.reshape(height, width)


def hold_out_fields(
    labels: np.ndarray, available: np.ndarray, share: float, fallback: np.ndarray, seed: int
) -> np.ndarray:
    """HxW mask of whole fields held out: for each class with two fields or more among the
    `available` pixels, a seeded draw of its fields up to about `share` of its pixels, never
    all of them; a class in one field takes its pixels in `fallback` (blocks) instead."""
    labels = np.asarray(labels)
    fields = label_fields(np.where(available, labels, 0))
    held = np.zeros(labels.shape, dtype=bool)
    if share <= 0:
        return held
    flat_fields = fields.ravel()
    sizes = np.bincount(flat_fields[flat_fields >= 0])
    field_class = np.zeros(len(sizes), dtype=np.int64)
    field_class[flat_fields[flat_fields >= 0]] = labels.ravel()[flat_fields >= 0]
    chosen = np.zeros(len(sizes), dtype=bool)
    for k in np.unique(field_class):
        members = np.flatnonzero(field_class == k)
        if len(members) < 2:
            held |= fallback & (labels == k) & available
            continue
        target = share * sizes[members].sum()
        rng = np.random.default_rng([seed, int(k)])
        taken = 0
        for field in rng.permutation(members):
            if taken >= target or chosen[members].sum() == len(members) - 1:
                break
            if taken + sizes[field] <= FIELD_SLACK * target:
                chosen[field] = True
                taken += sizes[field]
        if taken == 0:
            chosen[members[np.argmin(sizes[members])]] = True
    return held | (fields >= 0) & chosen[np.maximum(fields, 0)]
