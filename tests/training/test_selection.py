"""Choosing between the untrained and the trained network on valid."""

import numpy as np

from starcast.training.trainer import _clearly_better


def test_a_gain_within_the_noise_keeps_the_simpler_model() -> None:
    rng = np.random.default_rng(0)
    baseline = rng.random(1000)
    noisy = baseline + rng.normal(0, 0.5, 1000) - 0.001
    assert not _clearly_better(noisy, baseline, standard_errors=2.0)


def test_a_clear_gain_is_kept() -> None:
    rng = np.random.default_rng(0)
    baseline = rng.random(1000)
    assert _clearly_better(baseline - 0.05 + rng.normal(0, 0.1, 1000), baseline, 2.0)


def test_zero_standard_errors_keeps_any_gain() -> None:
    baseline = np.array([1.0, 2.0, 3.0])
    assert _clearly_better(baseline - np.array([0.3, -0.1, 0.0]), baseline, 0.0)
    assert not _clearly_better(baseline + 0.01, baseline, 0.0)
