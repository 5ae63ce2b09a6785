"""benchmarks/sequence_signal.py: the yardstick finds order where there is some, none where not."""

import importlib.util
import sys
from pathlib import Path

import numpy as np
import polars as pl
import pytest

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"


@pytest.fixture
def signal(monkeypatch):
    monkeypatch.syspath_prepend(str(BENCHMARKS))  # (it imports its neighbour accuracy.py)
    spec = importlib.util.spec_from_file_location("sequence_signal", BENCHMARKS /
                                                  "sequence_signal.py")
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "sequence_signal", module)
    spec.loader.exec_module(module)
    return module


def _histories(autocorrelation: float, seed: int = 0, users: int = 600, events: int = 12):
    """(train, valid): each user's surprises an AR(1) along their events, on item effects;
    valid is every user's last event."""
    rng = np.random.default_rng(seed)
    item_effect = rng.normal(0, 0.5, 40)
    rows = []
    for user in range(users):
        noise, bias = 0.0, rng.normal(0, 0.3)
        for step in range(events):
            noise = autocorrelation * noise + rng.normal(0, 0.5)
            item = int(rng.integers(40))
            rows.append((f"u{user}", f"i{item}", 3.5 + bias + item_effect[item] + noise,
                         1_000 * user + step))
    frame = pl.DataFrame(rows, schema=["user", "item", "rating", "ts"], orient="row")
    last = pl.col("ts") == pl.col("ts").max().over("user")
    return frame.filter(~last), frame.filter(last)


def test_autocorrelated_surprises_show_in_valid(signal):
    result = signal.measure(*_histories(0.7), online=False)
    assert result["last_coef"] > 0.3
    assert result["fold_last"] < result["fold"]
    assert result["z"] < -3


def test_independent_surprises_show_nothing(signal):
    result = signal.measure(*_histories(0.0), online=False)
    assert abs(result["last_coef"]) < 0.1
    assert abs(result["z"]) < 3


def test_offline_reading_sees_only_train(signal):
    train, valid = _histories(0.7)
    # one more valid event per user, later: offline it is read from train's last event alone
    later = valid.with_columns(pl.col("ts") + 1)
    both = pl.concat([valid, later])
    offline = signal.measure(train, both, online=False)
    online = signal.measure(train, both, online=True)
    assert offline["valid"] == online["valid"] == both.height
    assert online["z"] < offline["z"]  # the fresh event read online says more
