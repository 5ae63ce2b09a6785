import numpy as np
import pytest

from starcast.evaluation.metrics import macro_mae, mae, per_class_mae, rmse


def test_metrics_against_hand_computed_values():
    y = np.array([5.0, 5.0, 5.0, 1.0])
    p = np.array([5.0, 4.0, 5.0, 3.0])
    assert rmse(y, p) == pytest.approx(np.sqrt((0 + 1 + 0 + 4) / 4))
    assert mae(y, p) == pytest.approx(0.75)
    assert per_class_mae(y, p) == {1: pytest.approx(2.0), 5: pytest.approx(1 / 3)}
    assert macro_mae(y, p) == pytest.approx((2.0 + 1 / 3) / 2)


def test_constant_three_scores_macro_mae_1_2_on_all_five_classes():
    y = np.array([1, 2, 3, 4, 5, 5, 5, 5], dtype=float)
    assert macro_mae(y, np.full(len(y), 3.0)) == pytest.approx(1.2)


def test_classification_views_of_rounded_predictions():
    from starcast.evaluation.metrics import accuracy, confusion, macro_f1, per_class_rmse

    stars = np.arange(1, 6)
    y = np.array([5.0, 5.0, 4.0, 1.0])
    p = np.array([4.6, 3.9, 4.2, 2.6])  # rounded: 5, 4, 4, 3
    assert accuracy(y, p) == pytest.approx(0.5)
    counts = confusion(y, p, stars)
    assert counts[4, 4] == 1 and counts[4, 3] == 1 and counts[3, 3] == 1 and counts[0, 2] == 1
    assert counts.sum() == 4
    # F1 per class present: 5 (P 1, R .5 -> 2/3), 4 (P .5, R 1 -> 2/3), 1 (0), 3 (0)
    assert macro_f1(y, p, stars) == pytest.approx((2 / 3 + 2 / 3 + 0 + 0) / 4)
    assert per_class_rmse(y, p)[5] == pytest.approx(np.sqrt((0.4**2 + 1.1**2) / 2))


def test_probabilistic_metrics():
    from starcast.evaluation.metrics import calibration, negative_log_likelihood

    y = np.array([1.0, 2.0])
    probs = np.array([[0.5, 0.5, 0, 0, 0], [0.25, 0.75, 0, 0, 0]])
    expected = -(np.log(0.5) + np.log(0.75)) / 2
    assert negative_log_likelihood(y, probs, low=1) == pytest.approx(expected)
    table = calibration(y, probs, low=1, bins=4)
    assert sum(row["count"] for row in table) == 10
    by_bin = {row["bin"]: row for row in table}
    assert by_bin["0.50-0.75"]["count"] == 2  # event 1's p(1) = p(2) = .5; only star 1 true
    assert by_bin["0.50-0.75"]["observed"] == pytest.approx(0.5)
    assert by_bin["0.75-1.00"]["count"] == 1 and by_bin["0.75-1.00"]["observed"] == 1.0
    assert by_bin["0.00-0.25"]["count"] == 6  # the zeros: never observed
    assert by_bin["0.00-0.25"]["observed"] == 0.0


def test_bootstrap_interval_is_seeded_and_brackets_the_estimate():
    from starcast.evaluation.metrics import bootstrap_interval

    rng = np.random.default_rng(1)
    y, p = rng.integers(1, 6, 300).astype(float), rng.uniform(1, 5, 300)
    low, high = bootstrap_interval(y, p, rmse, seed=3)
    assert low < rmse(y, p) < high
    assert (low, high) == bootstrap_interval(y, p, rmse, seed=3)


def test_paired_bootstrap_interval_sees_a_consistent_gain():
    from starcast.evaluation.metrics import paired_bootstrap_interval

    rng = np.random.default_rng(0)
    y = rng.integers(1, 6, 2_000).astype(float)
    good = y + rng.normal(0, 0.5, len(y))
    worse = good + rng.normal(0, 0.3, len(y))  # the same errors plus some of its own
    low, high = paired_bootstrap_interval(y, good, worse, seed=1)
    assert low < high < 0  # `good` has the lower RMSE on every resample's 95%
    assert paired_bootstrap_interval(y, good, good) == (0.0, 0.0)


def test_paired_bootstrap_interval_over_several_seeds_is_the_mean_of_theirs():
    from starcast.evaluation.metrics import paired_bootstrap_interval

    rng = np.random.default_rng(2)
    y = rng.integers(1, 6, 500).astype(float)
    a = y + rng.normal(0, 0.5, (3, len(y)))
    b = a + rng.normal(0, 0.4, (3, len(y)))
    low, high = paired_bootstrap_interval(y, a, b, seed=0)
    point = np.mean([rmse(y, p) for p in a]) - np.mean([rmse(y, p) for p in b])
    assert low < point < high < 0
