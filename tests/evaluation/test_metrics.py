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
