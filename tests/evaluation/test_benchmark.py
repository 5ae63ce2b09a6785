"""Several models on one split; the peers (Surprise, the Bayesian FM) with the `peers` extra."""

import polars as pl
import pytest

from starcast.config import LSTMConfig, StarcastConfig, TransformerConfig
from starcast.data.readers import read_events
from starcast.data.schema import RatingScale
from starcast.data.splits import split_events
from starcast.data.synth import SynthConfig, generate
from starcast.evaluation import peers
from starcast.evaluation.benchmark import markdown, run_benchmark
from starcast.evaluation.metrics import macro_mae, rmse
from starcast.models import bayesian_fm
from starcast.models.stars import StarCosts, star_shares


@pytest.fixture(scope="module")
def split():
    return split_events(generate(SynthConfig(users=120, items=50, events=2_500, seed=2)).events,
                        "time")


def test_every_model_on_the_same_test_rows(split) -> None:
    history = pl.concat([split.train, split.valid, split.test])
    rows = run_benchmark(split, ["mean", "bias"], history, with_peers=False)
    assert [r["model"] for r in rows] == ["mean", "bias"]
    assert all(r["fit_seconds"] >= 0 and r["predictions_per_second"] > 0 for r in rows)
    table = markdown(rows)
    assert table.count("\n") == 4 and f"{rows[1]['rmse']:.4f}" in table


def test_peers_join_when_installed() -> None:
    pytest.importorskip("surprise")
    pytest.importorskip("myfm")
    # (loo: under `time` the FM's day of the test period is the last known one, and its weight
    # rests on a handful of events of this small set)
    split = split_events(generate(SynthConfig(users=120, items=50, events=2_500, seed=2)).events,
                         "loo")
    rows = run_benchmark(split, ["mean"], pl.concat([split.train, split.valid]), with_peers=True)
    assert [r["model"] for r in rows] == ["mean", *peers.PEERS]
    mean = rows[0]["rmse"]
    # every peer learns something the global mean does not know
    assert all(r["rmse"] < mean for r in rows[1:]), rows
    # a balanced reading wherever there are star probabilities: starcast's and the probit's
    readings = {r["model"]: r["balanced_macro_mae"] for r in rows}
    assert readings["mean"] is not None and readings["bayesian-fm-probit"] is not None
    assert readings["bayesian-fm"] is None and readings["surprise-svd"] is None


def test_asking_for_missing_peers_names_the_extra(split, monkeypatch) -> None:
    monkeypatch.setattr(peers, "available", lambda name=None: name not in peers.BAYESIAN_FM)
    with pytest.raises(Exception, match=r"myfm: pip install 'starcast\[peers\]'"):
        run_benchmark(split, ["mean"], split.train, with_peers=True)


def test_ordered_probit_gives_star_probabilities(split) -> None:
    pytest.importorskip("myfm")
    known = pl.concat([split.train, split.valid])
    out = bayesian_fm.fit_predict(known, split.test, RatingScale(), probit=True, seed=42)
    assert out.probabilities.shape == (split.test.height, 5)
    assert abs(out.probabilities.sum(axis=1) - 1).max() < 1e-6
    expected = out.probabilities @ [1, 2, 3, 4, 5]
    assert abs(out.mean - expected).max() < 1e-9


def test_bayesian_fm_reproduces_the_published_setting(data_dir) -> None:
    """Digital_Music `time`, regression, seed 42: 0.7776 test RMSE in the accuracy issue."""
    pytest.importorskip("myfm")
    events = read_events(data_dir / "amazon" / "Digital_Music_5.partial.json.gz").events
    split = split_events(events, "time")
    known = pl.concat([split.train, split.valid])
    out = bayesian_fm.fit_predict(known, split.test, RatingScale(), probit=False, seed=42)
    assert abs(rmse(split.test["rating"].to_numpy(), out.mean) - 0.7776) < 2e-3


def test_the_probit_fm_read_the_balanced_way_reproduces_the_published_macro_mae(data_dir):
    """Digital_Music `time`, ordered probit, seed 42, costs from train + valid: 1.5044
    macro-MAE in the balanced-reading issue."""
    pytest.importorskip("myfm")
    events = read_events(data_dir / "amazon" / "Digital_Music_5.partial.json.gz").events
    split = split_events(events, "time")
    known = pl.concat([split.train, split.valid])
    out = peers.fit_predict("bayesian-fm-probit", known, split.test, RatingScale(), seed=0)
    costs = StarCosts.inverse_share(star_shares(known["rating"].to_numpy(), 1.0, 5))
    balanced = costs.balanced(out.probabilities, 1.0)
    assert abs(macro_mae(split.test["rating"].to_numpy(), balanced) - 1.5044) < 5e-3


def test_sequence_models_report_their_training_speed(split) -> None:
    history = pl.concat([split.train, split.valid])
    config = StarcastConfig(lstm=LSTMConfig(factors=False, epochs=1),
                            transformer=TransformerConfig(factors=False, epochs=1))
    rows = run_benchmark(split, ["bias", "lstm", "transformer"], history, with_peers=False,
                         config=config)
    speeds = {r["model"]: r["train_events_per_second"] for r in rows}
    assert speeds["bias"] is None
    assert speeds["lstm"] > 0 and speeds["transformer"] > 0
    assert "train_events_per_second" in markdown(rows)
