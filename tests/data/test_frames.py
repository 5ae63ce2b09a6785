"""Frames handed to the Python API: Polars, pandas or Arrow, ids of any type, checked."""

import polars as pl
import pytest

from starcast import Forecaster
from starcast.data.synth import SynthConfig, generate
from starcast.errors import DataError


@pytest.fixture(scope="module")
def fitted():
    events = generate(SynthConfig(users=30, items=20, events=400, seed=1)).events
    return Forecaster("bias").fit(events), events


def test_pandas_and_arrow_tables_predict_as_polars_does(fitted) -> None:
    pytest.importorskip("pandas")
    model, events = fitted
    expected = model.predict(events, events)
    for history, queries in ((events.to_pandas(), events.to_pandas()),
                             (events.to_arrow(), events.to_arrow())):
        assert model.predict(history, queries).equals(expected)
    again = Forecaster("bias").fit(events.to_pandas()).predict(events, events)
    assert again.equals(expected)


def test_integer_ids_are_read_as_text(fitted) -> None:
    _, events = fitted
    numbered = events.with_columns(pl.col("user").str.slice(1).cast(pl.Int64),
                                   pl.col("item").str.slice(1).cast(pl.Int64))
    out = Forecaster("bias").fit(numbered).predict(numbered, numbered)
    assert out["user"].dtype == pl.Utf8
    assert out["user"].to_list() == numbered["user"].cast(pl.Utf8).to_list()


@pytest.mark.parametrize(("change", "message"), [
    (lambda f: f.drop("ts"), r"queries lack column\(s\) \['ts'\]"),
    (lambda f: f.with_columns(pl.col("ts") * 1000), "milliseconds"),
    (lambda f: f.with_columns(pl.lit("soon").alias("ts")), "column 'ts' of type String"),
    (lambda f: f.with_columns(pl.lit(None, pl.Utf8).alias("user")), "missing value"),
])
def test_bad_query_frames_get_starcast_errors_naming_the_column(fitted, change, message):
    model, events = fitted
    with pytest.raises(DataError, match=message):
        model.predict(events, change(events))


def test_something_that_is_not_a_table_is_named() -> None:
    with pytest.raises(DataError, match="expected a Polars, pandas or Arrow table, got list"):
        Forecaster("bias").fit([("u", "i", 5, 1)])
