"""Slices on a constructed split whose cold/warm membership and history lengths are known."""

import polars as pl
import pytest

from starcast import Forecaster
from starcast.evaluation.evaluate import evaluate


def events(rows):
    return pl.DataFrame(rows, schema=["user", "item", "rating", "ts"], orient="row")


TRAIN = events([("a", "x", 5.0, 1), ("a", "y", 4.0, 2), ("b", "x", 2.0, 3), ("b", "y", 1.0, 4)])
# c: never in training and no history before its query; z: an item nobody trained. A query
# never sees its own (user, item) event, so (a, x) sees only a's rating of y.
QUERIES = events([("a", "x", 5.0, 10), ("c", "x", 3.0, 10), ("a", "z", 4.0, 10),
                  ("c", "z", 1.0, 10), ("b", "y", 2.0, 10)])


@pytest.fixture(scope="module")
def evaluation():
    model = Forecaster("bias").fit(TRAIN)
    return evaluate(model, TRAIN, QUERIES)


def test_cold_start_slices(evaluation) -> None:
    labels = evaluation.predictions["cold_start"].to_list()
    assert labels == ["warm", "cold user", "cold item", "both", "warm"]
    rows = {r["slice"]: r["count"] for r in evaluation.metrics["slices"]["cold_start"]}
    assert rows == {"warm": 2, "cold user": 1, "cold item": 1, "both": 1}


def test_history_and_true_rating_slices(evaluation) -> None:
    assert evaluation.predictions["visible_history"].to_list() == [1, 0, 2, 0, 1]
    history = {r["slice"]: r["count"] for r in evaluation.metrics["slices"]["history"]}
    assert history == {"0": 2, "1-2": 3}
    stars = [r["slice"] for r in evaluation.metrics["slices"]["true_rating"]]
    assert stars == ["1", "2", "3", "4", "5"]


def test_slice_errors_are_those_of_their_rows(evaluation) -> None:
    frame = evaluation.predictions.filter(pl.col("history") == "0")
    row = [r for r in evaluation.metrics["slices"]["history"] if r["slice"] == "0"][0]
    errors = (frame["prediction"] - frame["truth"]).abs()
    assert row["mae"] == pytest.approx(errors.mean())
    assert evaluation.metrics["overall"]["n"] == QUERIES.height


def test_queries_without_ratings_are_refused() -> None:
    from starcast.errors import DataError

    with pytest.raises(DataError, match="rating"):
        evaluate(Forecaster("bias").fit(TRAIN), TRAIN, QUERIES.drop("rating"))
