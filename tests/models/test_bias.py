import numpy as np
import polars as pl
import pytest

from starcast.config import BiasConfig
from starcast.errors import NotFittedError
from starcast.models.bias import BiasModel, fit_biases, predictive_shrinkage
from starcast.models.mean import GlobalMean


def events(rows):
    return pl.DataFrame(rows, schema=["user", "item", "rating", "ts"], orient="row")


TRAIN = events([("a", "x", 5.0, 1), ("a", "y", 4.0, 2), ("b", "x", 2.0, 3), ("b", "y", 1.0, 4),
                ("c", "x", 4.0, 5)])


def test_unregularised_als_recovers_additive_biases():
    users, items = np.array([0, 0, 1, 1]), np.array([0, 1, 0, 1])
    ratings = 3.0 + np.array([1, 1, -1, -1]) + np.array([0.5, -0.5, 0.5, -0.5])
    mu, bu, bi = fit_biases(users, items, ratings, 2, 2, BiasConfig(0.0, 0.0, iterations=20))
    np.testing.assert_allclose(mu + bu[users] + bi[items], ratings, atol=1e-9)


def test_predictions_in_order_in_scale_and_cold_flags():
    model = BiasModel().fit(TRAIN)
    queries = pl.DataFrame({"user": ["b", "zz", "a"], "item": ["y", "x", "new"], "ts": [9, 9, 9]})
    out = model.predict(None, queries)
    assert out["user"].to_list() == ["b", "zz", "a"]
    assert out["cold"].to_list() == [False, True, True]
    assert ((out["prediction"] >= 1) & (out["prediction"] <= 5)).all()
    assert out["prediction"][0] < out["prediction"][2]  # b rates low


def test_fold_in_uses_history_given_at_predict_time():
    model = BiasModel(BiasConfig(reg_user=1.0)).fit(TRAIN)
    queries = pl.DataFrame({"user": ["new"], "item": ["x"], "ts": [100]})
    low = events([("new", "y", 1.0, 50)])
    high = events([("new", "y", 5.0, 50)])
    late = events([("new", "y", 1.0, 150)])  # after the query: invisible
    p_low, p_high, p_late = (model.predict(h, queries)["prediction"][0] for h in (low, high, late))
    assert p_low < p_late < p_high
    assert model.predict(low, queries)["cold"][0] is False


def test_unfitted_model_raises():
    with pytest.raises(NotFittedError):
        GlobalMean().predict(None, TRAIN)


def test_predictive_shrinkage_recovers_noise_over_signal_variance() -> None:
    """Users' biases ~ N(0, 1), ratings add N(0, 2^2) noise: the best forecast shrinks by ~4."""
    rng = np.random.default_rng(0)
    residuals, sums, counts = [], [], []
    for bias in rng.normal(0, 1, 3000):
        r = bias + rng.normal(0, 2, 8)
        residuals += list(r)
        sums += list(np.r_[0, np.cumsum(r)[:-1]])
        counts += list(range(8))
    lam = predictive_shrinkage(np.array(residuals), np.array(sums), np.array(counts, float))
    assert 3.0 < lam < 5.5
    assert predictive_shrinkage(np.zeros(3), np.zeros(3), np.zeros(3)) == 1.0


def test_valid_prediction_is_valid_predicted_from_train_alone():
    valid = events([("a", "x", 3.0, 6), ("c", "y", 5.0, 7), ("new", "x", 4.0, 8)])
    model = BiasModel().fit(TRAIN, valid)
    served = model.predict(TRAIN, valid)["prediction"].to_numpy()
    np.testing.assert_allclose(model.valid_prediction_, served)
    assert BiasModel().fit(TRAIN).valid_prediction_ is None
