"""The blend weight: the posterior mean of a mixing weight under a flat prior on [0, 1]."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from scipy.stats import truncnorm

from starcast.models.blend import NO_VALID, _truncated_mean, _weight


@given(st.floats(-3.0, 0.5), st.floats(0.05, 5.0))
def test_the_truncated_mean_is_the_truncated_normals(mean, sd) -> None:
    reference = truncnorm.mean(-mean / sd, (1 - mean) / sd, loc=mean, scale=sd)
    assert _truncated_mean(mean, sd) == pytest.approx(reference, rel=1e-6, abs=1e-9)


@given(st.floats(-1e6, 0.5), st.floats(1e-9, 1e6))
def test_the_truncated_mean_stays_in_range_and_falls_toward_the_bound(mean, sd) -> None:
    got = _truncated_mean(mean, sd)  # to 1e-6: a weight's digits beyond that do not matter
    assert 0.0 <= got <= 0.5 + 1e-6
    assert got <= _truncated_mean(mean, sd * 2) + 1e-6  # more doubt: nearer the middle


def _mixture(weight: float, noise: float, n: int = 400) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    gap = rng.normal(size=n)
    return gap, weight * gap + noise * rng.normal(size=n)


@pytest.mark.parametrize("weight", [-2.0, -0.3, 0.0, 0.3, 0.8, 1.0, 1.7])
def test_a_well_determined_weight_is_the_clipped_least_squares_one(weight) -> None:
    assert _weight(*_mixture(weight, 1e-3)) == pytest.approx(np.clip(weight, 0, 1), abs=1e-3)


def test_an_undetermined_weight_stays_near_the_middle() -> None:
    """Least squares -0.29 +- 0.24 (Digital_Music `time`'s new users): not the bound 0."""
    gap, residual = _mixture(-0.3, 5.0, n=400)
    noise = residual - (gap @ residual) / (gap @ gap) * gap
    spread = np.sqrt(noise @ noise / 399 / (gap @ gap))
    assert 0.1 < spread < 0.5
    assert 0.05 < _weight(gap, residual) < 0.5
    assert _weight(*_mixture(-0.3, 1e6)) == pytest.approx(0.5, abs=1e-3)


def test_a_weight_without_evidence_is_the_plain_average() -> None:
    assert _weight(np.zeros(10), np.ones(10)) == NO_VALID
    assert _weight(np.ones(1), np.ones(1)) == NO_VALID
    assert _weight(np.ones(5), 0.4 * np.ones(5)) == pytest.approx(0.4)  # exact: no noise
