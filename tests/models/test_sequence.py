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


def _fitted(tables: str, valid: bool = True, epochs: int = 2, recurrent: bool | str = True,
            forecaster: bool = False):
    from starcast.config import LSTMConfig, StarcastConfig

    data = generate(SynthConfig(users=150, items=60, events=3_000, seed=6))
    split = split_events(data.events, "loo")
    config = StarcastConfig(lstm=LSTMConfig(factors=False, item_tables=tables, significance=0.0,
                                            recurrent=recurrent))
    fitted = Forecaster(config=config, seed=0, epochs=epochs).fit(
        split.train, split.valid if valid else None)
    return fitted if forecaster else fitted.model_


def test_fixed_item_tables_keep_their_initial_values_and_learned_ones_move() -> None:
    fixed, learned = _fitted("fixed", valid=False), _fitted("learned", valid=False)
    untrained = _fitted("fixed", valid=False, epochs=0)
    for name in ("item.weight", "item_bias.weight", "side_bias.weight"):
        start = untrained.net_.state_dict()[name]
        assert torch_equal(fixed.net_.state_dict()[name], start), name
    assert not torch_equal(learned.net_.state_dict()["item.weight"],
                           untrained.net_.state_dict()["item.weight"])
    assert fixed.log_.item_tables == "fixed" and learned.log_.item_tables == "learned"
    # the shared weights learned in both
    assert not torch_equal(fixed.net_.state_dict()["mlp.3.weight"],
                           untrained.net_.state_dict()["mlp.3.weight"])


def test_auto_keeps_the_try_of_lower_valid_rmse_and_refits_with_its_tables() -> None:
    from starcast.training.trainer import TrainLog

    model = _fitted("auto")
    tries = {t: _fitted(t).log_.chosen_rmse for t in ("fixed", "learned")}
    assert model.log_.item_tables == min(tries, key=tries.get)
    assert model.log_.chosen_rmse == pytest.approx(min(tries.values()))
    assert len(model.log_.refit_epochs) == model.log_.best_epoch
    assert _fitted("auto", valid=False).log_.item_tables == "learned"  # nothing to choose by
    assert np.isnan(TrainLog().chosen_rmse)


def test_auto_recurrent_keeps_the_reading_of_lower_valid_rmse_and_it_persists(tmp_path) -> None:
    fitted = _fitted("fixed", recurrent="auto", forecaster=True)
    model = fitted.model_
    tries = {state: _fitted("fixed", recurrent=state).log_.chosen_rmse for state in (True, False)}
    assert tries[True] != tries[False]  # trained networks: the two ways differ
    assert model.log_.recurrent == min(tries, key=tries.get)
    assert model.net_.recurrent == model.log_.recurrent  # the refit trained the same way
    assert model.log_.chosen_rmse == pytest.approx(min(tries.values()))
    assert fitted.training_log["recurrent"] == model.log_.recurrent
    loaded = Forecaster.load(fitted.save(tmp_path / "m"))
    assert loaded.model_.net_.recurrent == model.net_.recurrent
    data = generate(SynthConfig(users=150, items=60, events=3_000, seed=6))
    split = split_events(data.events, "loo")
    history = pl.concat([split.train, split.valid])
    assert loaded.predict(history, split.test).equals(fitted.predict(history, split.test))
    assert _fitted("fixed", valid=False, recurrent="auto").log_.recurrent  # nothing to choose by


def test_recurrent_setting_is_validated() -> None:
    from starcast.config import LSTMConfig
    from starcast.errors import ConfigError

    with pytest.raises(ConfigError, match="lstm.recurrent must be true, false or auto"):
        LSTMConfig(recurrent="sometimes")


def test_valid_prediction_is_the_kept_epoch_before_the_refit() -> None:
    model = _fitted("fixed")
    data = generate(SynthConfig(users=150, items=60, events=3_000, seed=6))
    truth = split_events(data.events, "loo").valid["rating"].to_numpy()
    rmse = float(np.sqrt(np.mean((model.valid_prediction_ - truth) ** 2)))
    assert model.log_.refit_epochs  # the served network was trained again, on train + valid
    assert rmse == pytest.approx(model.log_.chosen_rmse, abs=1e-5)


def test_a_configured_batch_size_is_kept_else_an_epoch_takes_at_least_50_steps() -> None:
    from starcast.config import LSTMConfig
    from starcast.training.trainer import batch_size

    assert batch_size(LSTMConfig(batch_size=5), 10_000) == 5
    assert [batch_size(LSTMConfig(), n) for n in (50, 1_000, 2_500, 100_000)] == [8, 20, 50, 64]


def torch_equal(a, b) -> bool:
    import torch

    return bool(torch.equal(a, b))


def test_a_network_that_reads_no_state_never_runs_its_encoder(monkeypatch) -> None:
    from starcast.models.encoders import LSTMEncoder

    def refuse(*args, **kwargs):
        raise AssertionError("the encoder ran")

    monkeypatch.setattr(LSTMEncoder, "along", refuse)
    model = _fitted("fixed", recurrent=False)  # trains (chunks carry no state) and predicts valid
    assert not model.net_.recurrent and len(model.log_.epochs) > 1
    with pytest.raises(AssertionError, match="the encoder ran"):
        _fitted("fixed", recurrent=True)
