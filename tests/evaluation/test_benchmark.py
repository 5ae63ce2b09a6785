"""Several models on one split; the Surprise peers when the `peers` extra is installed."""

import polars as pl
import pytest

from starcast.data.splits import split_events
from starcast.data.synth import SynthConfig, generate
from starcast.evaluation.benchmark import markdown, run_benchmark


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


def test_surprise_peers_join_when_installed(split) -> None:
    pytest.importorskip("surprise")
    rows = run_benchmark(split, ["bias"], pl.concat([split.train, split.valid]), with_peers=True)
    assert [r["model"] for r in rows] == ["bias", "surprise-svd", "surprise-svdpp"]
    assert all(1.0 <= r["rmse"] < 2.0 for r in rows)
