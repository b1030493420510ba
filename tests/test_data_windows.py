"""Window positions (inside masks, centred on pixels) and window cutting."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from s3fn.data import S3FNDataError, WindowCutter, sample_origins, valid_origins, window_sums
from tests.data_helpers import cube


def _brute_window_sums(mask, h, w, centred):
    dy, dx = (h // 2, w // 2) if centred else (0, 0)
    out = np.zeros(mask.shape, np.int64)
    for r in range(mask.shape[0]):
        for c in range(mask.shape[1]):
            r0, c0 = max(r - dy, 0), max(c - dx, 0)
            out[r, c] = mask[r0 : max(r - dy + h, 0), c0 : max(c - dx + w, 0)].sum()
    return out


@settings(max_examples=40, deadline=None)
@given(
    st.integers(1, 9),
    st.integers(1, 9),
    st.integers(1, 5),
    st.integers(1, 5),
    st.booleans(),
    st.integers(0, 2**31),
)
def test_window_sums_match_brute_force(height, width, h, w, centred, seed):
    mask = np.random.default_rng(seed).random((height, width)) < 0.6
    np.testing.assert_array_equal(
        window_sums(mask, (h, w), centred=centred), _brute_window_sums(mask, h, w, centred)
    )


def test_valid_origins_are_exactly_the_windows_inside_the_mask():
    mask = np.zeros((10, 12), bool)
    mask[2:8, 3:9] = True
    mask[5, 5] = False
    origins = valid_origins(mask, (3, 2))
    expected = [(r, c) for r in range(8) for c in range(11) if mask[r : r + 3, c : c + 2].all()]
    assert [tuple(o) for o in origins] == expected


def test_sample_origins_reproducible_distinct_and_inside():
    mask = np.ones((20, 20), bool)
    mask[:, 15:] = False
    first = sample_origins(mask, 12, 8, np.random.default_rng(3))
    again = sample_origins(mask, 12, 8, np.random.default_rng(3))
    other = sample_origins(mask, 12, 8, np.random.default_rng(4))
    np.testing.assert_array_equal(first, again)
    assert not np.array_equal(first, other)
    assert len({tuple(o) for o in first}) == 12
    assert all(mask[r : r + 8, c : c + 8].all() for r, c in first)


def test_sample_origins_repeats_only_when_too_few_positions():
    mask = np.zeros((6, 6), bool)
    mask[1:5, 1:5] = True  # 3 x 3 windows: 4 positions
    origins = sample_origins(mask, 10, 3, np.random.default_rng(0))
    assert len(origins) == 10
    assert {tuple(o) for o in origins} == {(1, 1), (1, 2), (2, 1), (2, 2)}


def test_image_smaller_than_the_window_or_empty_mask_is_refused():
    with pytest.raises(S3FNDataError, match=r"5x5 image is smaller than a 8x8 window"):
        sample_origins(np.ones((5, 5), bool), 1, 8, np.random.default_rng(0))
    with pytest.raises(S3FNDataError, match=r"mask of the 9x9 image is empty"):
        sample_origins(np.zeros((9, 9), bool), 1, 3, np.random.default_rng(0))


def test_objects_smaller_than_the_window_take_the_best_covering_windows():
    mask = np.zeros((12, 12), bool)
    mask[4:8, 3:9] = True  # a 4 x 6 object: no 5 x 5 window fits inside it
    origins = sample_origins(mask, 30, 5, np.random.default_rng(0))
    covered = [int(mask[r : r + 5, c : c + 5].sum()) for r, c in origins]
    assert min(covered) >= 13  # at least half of each window is on the object
    assert {tuple(o) for o in origins} == {
        (r, c) for r in range(8) for c in range(8) if mask[r : r + 5, c : c + 5].sum() >= 13
    }


def test_cut_at_origins_is_band_first_slicing():
    image = cube(9, 11, 4)
    origins = np.array([[0, 0], [3, 5], [4, 6], [3, 5]])
    windows = WindowCutter(image, (5, 5)).at_origins(origins)
    assert windows.shape == (4, 4, 5, 5) and windows.dtype == np.float32
    for window, (r, c) in zip(windows, origins, strict=True):
        np.testing.assert_array_equal(window, image[r : r + 5, c : c + 5].transpose(2, 0, 1))
    with pytest.raises(
        S3FNDataError, match=r"window origin \(5, 0\): a 5x5 window leaves the 9x11"
    ):
        WindowCutter(image, 5).at_origins([[5, 0]])


@pytest.mark.parametrize("size", [(5, 5), (4, 6), (1, 1)])
def test_cut_at_centres_reflects_at_the_border(size):
    image = cube(7, 8, 3)
    h, w = size
    padded = np.pad(image, ((h // 2, h - h // 2 - 1), (w // 2, w - w // 2 - 1), (0, 0)), "reflect")
    centres = np.array([[0, 0], [6, 7], [3, 4], [0, 7]])
    windows = WindowCutter(image, size).at_centres(centres)
    for window, (r, c) in zip(windows, centres, strict=True):
        np.testing.assert_array_equal(window, padded[r : r + h, c : c + w].transpose(2, 0, 1))
        assert np.array_equal(window[:, h // 2, w // 2], image[r, c])
    with pytest.raises(S3FNDataError, match="window centres must lie inside the 7x8 image"):
        WindowCutter(image, size).at_centres([[7, 0]])


def test_bad_sizes():
    with pytest.raises(S3FNDataError, match=r"window size \(0, 3\): expected positive integers"):
        valid_origins(np.ones((3, 3), bool), (0, 3))
    with pytest.raises(S3FNDataError, match=r"image of shape \(3, 3\): expected HxWxC"):
        WindowCutter(np.ones((3, 3)), 2)
