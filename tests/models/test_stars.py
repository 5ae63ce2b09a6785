"""Star probabilities around a point prediction and their two readings (models.stars)."""

import numpy as np
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from starcast import Forecaster
from starcast.config import LSTMConfig, StarcastConfig
from starcast.data.splits import split_events
from starcast.data.synth import SynthConfig, generate
from starcast.errors import ConfigError
from starcast.evaluation.metrics import macro_mae, negative_log_likelihood
from starcast.models.stars import (
    StarCalibration,
    StarContext,
    StarCosts,
    star_shares,
    surprise_share,
)

finite = st.floats(-50, 50, allow_nan=False)


def context(visible, cold, ratings=None):
    """A StarContext of customers whose visible ratings are `ratings` (default: all 4s)."""
    visible = np.asarray(visible)
    if ratings is None:
        return StarContext(visible, cold, 4.0 * visible, 16.0 * visible)
    return StarContext(visible, cold, ratings.sum(axis=1), (ratings**2).sum(axis=1))


@settings(max_examples=200, deadline=None)
@given(
    cuts=arrays(np.float64, 4, elements=finite),
    slope=finite,
    spread=arrays(np.float64, 4, elements=st.floats(-3, 3)),
    mean=arrays(np.float64, 7, elements=st.floats(1, 5)),
    ratings=arrays(np.float64, (7, 3), elements=st.sampled_from([1.0, 2.0, 3.0, 4.0, 5.0])),
    seen=arrays(np.bool_, (7, 3)),
    cold=arrays(np.bool_, 7),
    surprise=st.floats(0, 1),
)
def test_probabilities_are_a_distribution_over_the_stars(cuts, slope, spread, mean, ratings,
                                                         seen, cold, surprise) -> None:
    calibration = StarCalibration(np.sort(cuts), slope, spread, prior_var=1.2, surprise=surprise)
    p = calibration.probabilities(mean, context(seen.sum(axis=1), cold, ratings * seen))
    assert p.shape == (7, 5)
    assert (p >= 0).all()
    assert np.allclose(p.sum(axis=1), 1.0)


@settings(max_examples=200, deadline=None)
@given(
    raw=arrays(np.float64, (6, 5), elements=st.floats(0, 1)),
    costs=st.one_of(arrays(np.float64, 5, elements=st.floats(0, 100)),
                    arrays(np.float64, (5, 5), elements=st.floats(0, 100))),
)
def test_the_balanced_star_minimises_the_stated_expected_cost(raw, costs) -> None:
    p = (raw + 1e-3) / (raw + 1e-3).sum(axis=1, keepdims=True)
    reading = StarCosts.parse(costs, 5)
    star = reading.balanced(p, low=1.0)
    expected = p @ reading.matrix.T  # [N, K]: cost of reading each star
    chosen = expected[np.arange(6), (star - 1).astype(int)]
    assert (chosen <= expected.min(axis=1) + 1e-12).all()
    assert set(np.unique(star)) <= {1.0, 2.0, 3.0, 4.0, 5.0}


def test_per_star_weights_mean_weighted_absolute_error() -> None:
    matrix = StarCosts.parse([1, 2, 3, 4, 5], 5).matrix
    assert matrix[0, 4] == 4 * 5  # reading 1 when the truth is 5: 4 stars off, weight 5
    assert matrix[4, 0] == 4 * 1
    assert np.diag(matrix).sum() == 0


@pytest.mark.parametrize("bad", [[1, 2, 3], [[1, 2], [3, 4]], [1, 2, 3, 4, -1],
                                 [1, 2, 3, 4, float("nan")], "cheap"])
def test_bad_costs_are_refused_by_name(bad) -> None:
    with pytest.raises(ConfigError, match="costs"):
        StarCosts.parse(bad, 5, "costs")


def test_inverse_shares_make_a_rare_star_win_where_it_is_likely_enough() -> None:
    shares = star_shares(np.array([5.0] * 90 + [1.0] * 10), 1.0, 5)
    costs = StarCosts.inverse_share(shares)
    p = np.array([[0.3, 0.0, 0.0, 0.0, 0.7]])  # 1 star at three times its base rate
    assert StarCosts.of_weights(np.ones(5)).balanced(p, 1.0)[0] == 5.0  # the plain median
    assert costs.balanced(p, 1.0)[0] == 1.0


def test_fitted_calibration_beats_the_star_shares_on_held_out_events() -> None:
    """Customers with more history are predicted better, and steady customers (whose past
    ratings vary little) are steadier: the fitted spread follows both."""
    rng = np.random.default_rng(0)
    n = 6_000
    mean = rng.uniform(2, 5, n)
    visible = rng.integers(1, 30, n)
    steadiness = rng.uniform(0.2, 1.5, n)
    past = np.clip(np.rint(mean[:, None] + rng.normal(0, 1, (n, 29)) * steadiness[:, None]),
                   1, 5) * (np.arange(29)[None, :] < visible[:, None])
    noise = rng.normal(0, 1, n) * steadiness * 1.5 / np.sqrt(visible)
    truth = np.clip(np.rint(mean + noise), 1, 5)
    fit, held = slice(0, n // 2), slice(n // 2, n)
    ctx = context(visible, np.zeros(n, dtype=bool), past)
    part = lambda c, rows: StarContext(c.visible[rows], c.item_cold[rows],  # noqa: E731
                                       c.rating_sum[rows], c.rating_sq[rows])
    calibration = StarCalibration.fit(mean[fit], truth[fit], part(ctx, fit), 1.0, 1.0, 5)
    p = calibration.probabilities(mean[held], part(ctx, held))
    shares = np.tile(star_shares(truth[fit], 1.0, 5), (n // 2, 1))
    assert negative_log_likelihood(truth[held], p, 1) < negative_log_likelihood(
        truth[held], shares, 1) - 0.1
    assert calibration.spread[1] < 0  # more history, narrower
    assert calibration.spread[3] > 0  # a wider past, wider


@pytest.mark.parametrize("p_true", [
    np.r_[np.full(50, 0.6), np.full(2, 1e-3)],  # two surprises: a mode inside (0, 1)
    np.full(400, 0.7),  # none: the mode on the bound 0, the mean just above it
    np.full(3, 0.2),  # the uniform itself: the data cannot tell, the prior's mean 0.5
])
def test_the_surprise_share_is_its_posterior_mean(p_true) -> None:
    grid = np.linspace(0, 1, 1_000_001)
    log_likelihood = np.log(p_true[None, :] + grid[:, None] * (0.2 - p_true[None, :])).sum(1)
    weight = np.exp(log_likelihood - log_likelihood.max())
    assert surprise_share(p_true, 5) == pytest.approx((grid * weight).sum() / weight.sum(),
                                                      rel=1e-3, abs=1e-6)


def test_a_calibration_keeps_room_for_stars_its_held_out_events_never_showed() -> None:
    """Held-out events all near 5 stars: the logit alone gives a 1 almost nothing; the fitted
    share keeps it at about e / 5, and a saved calibration reads the same."""
    rng = np.random.default_rng(1)
    mean = rng.uniform(4.5, 5, 500)
    truth = np.clip(np.rint(mean + rng.normal(0, 0.3, 500)), 1, 5)
    ctx = context(np.full(500, 5), np.zeros(500, dtype=bool))
    calibration = StarCalibration.fit(mean, truth, ctx, 1.0, 1.0, 5)
    assert 0 < calibration.surprise < 0.05
    p = calibration.probabilities(mean, ctx)
    assert p[:, 0].min() >= calibration.surprise / 5
    restored = StarCalibration.restore(calibration.state())
    assert np.array_equal(restored.probabilities(mean, ctx), p)


@pytest.fixture(scope="module")
def fitted(quick):
    data = generate(SynthConfig(users=200, items=60, events=5_000, seed=3))
    split = split_events(data.events, "loo")
    model = Forecaster("lstm", quick, seed=0, epochs=1).fit(split.train, split.valid)
    return model, pl.concat([split.train, split.valid]), split.test


def test_every_prediction_carries_both_readings(fitted, tmp_path) -> None:
    model, history, test = fitted
    out = model.predict(history, test)
    assert out.columns == ["user", "item", "ts", "prediction", "balanced", "cold",
                           "p1", "p2", "p3", "p4", "p5"]
    probs = out.select(f"p{k}" for k in range(1, 6)).to_numpy()
    assert np.allclose(probs.sum(axis=1), 1.0)
    assert set(out["balanced"].unique()) <= {1.0, 2.0, 3.0, 4.0, 5.0}
    truth = test["rating"].to_numpy()
    assert macro_mae(truth, out["balanced"].to_numpy()) < macro_mae(truth, out["prediction"])
    loaded = Forecaster.load(model.save(tmp_path / "m"))
    again = loaded.predict(history, test)
    assert again["balanced"].to_list() == out["balanced"].to_list()
    assert np.abs(again.select(f"p{k}" for k in range(1, 6)).to_numpy() - probs).max() < 1e-9


def test_costs_given_at_predict_time_change_only_the_balanced_reading(fitted) -> None:
    model, history, test = fitted
    plain = model.predict(history, test)
    fives = model.predict(history, test, costs=[1, 1, 1, 1, 1e6])  # a missed 5 costs most
    assert (fives["balanced"] == 5.0).all()
    assert fives["prediction"].to_list() == plain["prediction"].to_list()


def test_a_model_with_its_own_probabilities_keeps_a_surprise_share(tmp_path) -> None:
    """The ordinal head's softmax is fitted, not calibrated on valid: its share is fitted on
    valid as the calibration's is, and every star keeps at least e / 5, saved and served."""
    data = generate(SynthConfig(users=150, items=50, events=3_000, seed=4))
    split = split_events(data.events, "loo")
    config = StarcastConfig(lstm=LSTMConfig(head="ordinal", significance=0.0))
    model = Forecaster(config=config, seed=0, epochs=1).fit(split.train, split.valid)
    share = model.model_.surprise_
    assert 0 < share < 0.2
    history = pl.concat([split.train, split.valid])
    out = model.predict(history, split.test)
    probs = out.select(f"p{k}" for k in range(1, 6)).to_numpy()
    assert probs.min() >= share / 5 - 1e-12 and np.allclose(probs.sum(axis=1), 1.0)
    loaded = Forecaster.load(model.save(tmp_path / "m"))
    assert loaded.model_.surprise_ == share
    assert np.array_equal(loaded.predict(history, split.test).select(
        f"p{k}" for k in range(1, 6)).to_numpy(), probs)
