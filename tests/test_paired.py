"""The validation's evidence that the network beats the linear model, resampled by units."""

from __future__ import annotations

import numpy as np
import pytest

from s3fn.evaluate.paired import advantage_lower_bound


def test_the_same_advantage_in_every_unit_is_certain():
    units = np.repeat(np.arange(6), 10)
    first = np.tile([1] * 7 + [0] * 3, 6)
    second = np.tile([1] * 5 + [0] * 5, 6)
    assert advantage_lower_bound(units, first, second) == pytest.approx(0.2)


def test_a_lead_won_in_one_unit_of_five_is_no_evidence():
    units = np.repeat(np.arange(5), 100)
    first = np.ones(500, bool)
    second = np.ones(500, bool)
    second[:100] = False  # the second model fails one whole field
    assert (first.mean() - second.mean()) == pytest.approx(0.2)
    assert advantage_lower_bound(units, first, second) <= 0.0


def test_a_steady_lead_over_many_units_is_sure_and_below_its_mean():
    rng = np.random.default_rng(0)
    units = np.repeat(np.arange(40), 25)
    first = rng.random(1000) < 0.9
    second = rng.random(1000) < 0.8
    gain = first.mean() - second.mean()
    lower = advantage_lower_bound(units, first, second)
    assert 0.0 < lower < gain
    centre = advantage_lower_bound(units, first, second, confidence=0.5)
    assert centre == pytest.approx(gain, abs=0.01)  # pooled over samples, not per unit


def test_bad_inputs_say_what_was_expected():
    with pytest.raises(ValueError, match="3 units, 2 and 3 hits"):
        advantage_lower_bound(np.arange(3), np.ones(2), np.ones(3))
    with pytest.raises(ValueError, match=r"confidence=1\.5"):
        advantage_lower_bound(np.arange(3), np.ones(3), np.ones(3), confidence=1.5)
