"""The default model: side features, persistence of them, and what they are for."""

import numpy as np
import polars as pl
import pytest

from starcast import Forecaster
from starcast.config import LSTMConfig, StarcastConfig
from starcast.data.splits import split_events
from starcast.data.synth import SynthConfig, generate

# side features are the network's (the FM beside it has tests of its own)
NETWORK_ONLY = StarcastConfig(lstm=LSTMConfig(factors=False))


@pytest.fixture(scope="module")
def held_out_items():
    """A fifth of the catalogue never appears in training; its events are the queries."""
    data = generate(SynthConfig(users=800, items=200, events=20_000, seed=1))
    rng = np.random.default_rng(0)
    ids = data.items["item"].to_numpy()
    held = rng.choice(ids, size=len(ids) // 5, replace=False)
    is_held = data.events["item"].is_in(pl.Series(held).implode())
    known = data.events.filter(~is_held)
    return data.items, split_events(known, "time"), known, data.events.filter(is_held)


def test_side_features_help_items_unseen_in_training(held_out_items) -> None:
    items, split, known, cold = held_out_items
    rmse = {}
    for name, table in (("without", None), ("with", items)):
        model = Forecaster(config=NETWORK_ONLY, seed=0, epochs=1).fit(split.train, split.valid,
                                                                      table)
        out = model.predict(known, cold)
        assert out["cold"].all()
        rmse[name] = float(np.sqrt(np.mean((out["prediction"] - cold["rating"]).to_numpy() ** 2)))
    assert rmse["with"] < rmse["without"] - 0.01, rmse


def test_side_features_survive_save_and_load(held_out_items, tmp_path) -> None:
    items, split, known, cold = held_out_items
    model = Forecaster(config=NETWORK_ONLY, seed=0, epochs=1).fit(split.train, split.valid, items)
    loaded = Forecaster.load(model.save(tmp_path / "m"))
    assert loaded.predict(known, cold).equals(model.predict(known, cold))


def test_item_side_recurrent_state_trains_predicts_and_persists(tmp_path) -> None:
    from starcast.config import LSTMConfig, StarcastConfig

    data = generate(SynthConfig(users=120, items=40, events=2_500, seed=4))
    split = split_events(data.events, "time")
    config = StarcastConfig(lstm=LSTMConfig(item_window=5))
    model = Forecaster(config=config, seed=0, epochs=2).fit(split.train)  # no valid: 2 epochs
    history = pl.concat([split.train, split.valid])
    out = model.predict(history, split.test)
    assert out["prediction"].is_between(1, 5).all()
    assert model.model_.log_.best_epoch == 2  # the trained item GRU is what predicts
    loaded = Forecaster.load(model.save(tmp_path / "m"))
    assert loaded.predict(history, split.test).equals(out)


def test_prediction_from_history_states_equals_one_sequence_per_query() -> None:
    import torch

    from starcast.features.prefixes import prefix_queries
    from starcast.training.trainer import predict_last

    data = generate(SynthConfig(users=150, items=60, events=3_000, seed=6))
    split = split_events(data.events, "time")
    known = pl.concat([split.train, split.valid])
    model = Forecaster("lstm", seed=0, epochs=2).fit(known, None).model_
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
