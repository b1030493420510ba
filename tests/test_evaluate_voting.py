"""Voting from windows to images: majority (with its tie rule) and mean probability."""

from __future__ import annotations

import numpy as np
import pytest

from s3fn.evaluate import group_labels, vote, vote_one


def test_majority_vote_counts_window_predictions():
    p = np.array([[0.6, 0.4, 0.0], [0.6, 0.4, 0.0], [0.0, 0.1, 0.9]])
    label, mean, counts = vote_one(p, "majority")
    assert label == 0
    np.testing.assert_array_equal(counts, [2, 0, 1])
    np.testing.assert_allclose(mean, p.mean(axis=0))
    assert vote_one(p, "mean-prob")[0] == 0  # mean [0.4, 0.3, 0.3]


def test_majority_and_mean_prob_can_disagree():
    # two weak votes for class 0, one confident vote for class 1
    p = np.array([[0.51, 0.49], [0.51, 0.49], [0.0, 1.0]])
    assert vote_one(p, "majority")[0] == 0
    assert vote_one(p, "mean-prob")[0] == 1


def test_majority_tie_goes_to_the_higher_mean_probability_then_the_lower_index():
    p = np.array([[0.9, 0.1, 0.0], [0.2, 0.8, 0.0], [0.0, 0.3, 0.7], [0.0, 0.0, 1.0]])
    # votes: class 0 once, class 1 once, class 2 twice -> 2
    assert vote_one(p, "majority")[0] == 2
    tie = np.array([[0.9, 0.1], [0.4, 0.6]])  # one vote each; mean [0.65, 0.35]
    assert vote_one(tie, "majority")[0] == 0
    tie = np.array([[0.4, 0.6], [0.9, 0.1]])  # order does not matter
    assert vote_one(tie, "majority")[0] == 0
    exact = np.array([[0.75, 0.25], [0.25, 0.75]])  # same votes, same mean -> lowest index
    assert vote_one(exact, "majority")[0] == 0
    assert vote_one(exact[:, ::-1], "majority")[0] == 0


def test_vote_groups_windows_by_image():
    p = np.array([[0.9, 0.1], [0.2, 0.8], [0.3, 0.7], [0.6, 0.4]])
    groups = np.array(["b", "a", "a", "b"])
    votes = vote(p, groups, "majority")
    np.testing.assert_array_equal(votes.groups, ["a", "b"])
    np.testing.assert_array_equal(votes.labels, [1, 0])
    np.testing.assert_allclose(votes.probabilities, [[0.25, 0.75], [0.75, 0.25]])
    np.testing.assert_array_equal(votes.counts, [[0, 2], [2, 0]])
    np.testing.assert_array_equal(group_labels([1, 0, 0, 1], groups), [0, 1])


def test_bad_input():
    with pytest.raises(ValueError, match="voting='max'"):
        vote_one(np.ones((1, 2)), "max")
    with pytest.raises(ValueError, match="holds windows of different classes"):
        group_labels([0, 1], [5, 5])
    with pytest.raises(ValueError, match="3 windows but 2 group ids"):
        vote(np.ones((3, 2)), [0, 1])
