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
