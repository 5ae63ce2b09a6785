"""What every sequence model (lstm, transformer) shares: how predictions read the history,
and how training cuts long customers."""

import numpy as np
import polars as pl
import pytest

from starcast import Forecaster
from starcast.data.splits import split_events
from starcast.data.synth import SynthConfig, generate
from starcast.features.sequences import training_sequences


@pytest.mark.parametrize("name", ["lstm", "transformer"])
def test_prediction_from_history_states_equals_one_sequence_per_query(name) -> None:
    import torch

    from starcast.features.prefixes import prefix_queries
    from starcast.training.trainer import predict_last

    data = generate(SynthConfig(users=150, items=60, events=3_000, seed=6))
    split = split_events(data.events, "time")
    known = pl.concat([split.train, split.valid])
    model = Forecaster(name, seed=0, epochs=2).fit(known, None).model_
    everything = pl.concat([known, split.test])  # the test events see themselves: own visible
    for history in (known, everything, known.clear()):
        queries = split.test.select("user", "item", "ts")
        fast = model._network_estimate(history, queries).mean
        seqs = model._query_sequences(history, queries)
        slow = predict_last(model.net_, seqs, torch.device("cpu"))[0]
        assert np.abs(fast - slow).max() < 1e-6
    # every test query's own event is in `everything`: mostly the last visible one, read from
    # the state just before it; the rest (a same-second event after it) got their own sequence
    marked = prefix_queries(model._with_index(everything), model._with_index(split.test))
    assert 0 < (~marked.own_visible).sum() and (marked.pos >= 0).any()


def _long_customers(n: int = 450) -> pl.DataFrame:
    """Two customers with long histories and a few short ones, indexed as models index them."""
    rng = np.random.default_rng(0)
    users = ["long-a"] * n + ["long-b"] * (n // 2) + [f"u{k}" for k in range(30)]
    return pl.DataFrame({
        "user": users,
        "item": [f"i{k}" for k in range(len(users))],
        "rating": rng.integers(1, 6, len(users)).astype(float),
        "ts": np.arange(len(users)) * 3_600,
        "_item": np.arange(len(users)) + 1,
        "_side": np.zeros(len(users), dtype=np.int64),
    }).sort(["user", "ts", "item"])


@pytest.mark.parametrize("context", [0, 50])
def test_long_customers_are_cut_into_chunks_with_each_event_a_target_once(context) -> None:
    events = _long_customers()
    seqs = training_sequences(events, np.zeros((events.height, 1), np.float32), max_len=200,
                              context=context)
    assert seqs.is_target.sum() == events.height
    assert np.array_equal(np.sort(seqs.item[seqs.is_target]), np.sort(events["_item"]))
    assert seqs.lengths.max() == 200 + context
    second = 1  # long-a's second chunk: with context, the 50 events before it come first
    part = slice(seqs.offsets[second], seqs.offsets[second + 1])
    assert seqs.item[part][~seqs.is_target[part]].tolist() == list(range(151, 151 + context))
    assert (seqs.follows >= 0).any() == (context == 0)  # a state is carried, or context read
    # the gap of a chunk's first step is the real one, as a prediction reads it
    assert np.allclose(seqs.gap[seqs.offsets[1]], np.log1p(1 / 24))


def test_a_transformer_reads_a_long_customer_without_quadratic_cost(tmp_path) -> None:
    """A customer of 20,000 events: a [T, T] attention matrix would need 1.6 GB per head."""
    data = generate(SynthConfig(users=60, items=40, events=1_500, seed=2))
    model = Forecaster("transformer", seed=0, epochs=1).fit(data.events, None)
    n = 20_000
    long = pl.DataFrame({"user": ["long"] * n, "item": [f"x{k}" for k in range(n)],
                         "rating": [4.0] * n, "ts": np.arange(n) * 60}).with_columns(
        pl.col("ts").cast(pl.Int64))
    queries = pl.DataFrame({"user": ["long"], "item": [data.events["item"][0]],
                            "ts": [n * 60]})
    out = model.predict(long, queries)
    assert out["prediction"].is_between(1, 5).all()
