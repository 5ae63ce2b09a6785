import polars as pl

from starcast.features.history import visible_sums


def frame(cols):
    return pl.DataFrame(cols)


def test_only_earlier_or_same_second_events_of_the_user_are_visible():
    history = frame({"user": ["a", "a", "a", "b"], "item": ["x", "y", "z", "x"],
                     "rating": [1.0, 2.0, 4.0, 5.0], "ts": [1, 2, 2, 5]})
    queries = frame({"user": ["a", "a", "a", "b", "c", "a"], "item": ["q", "q", "y", "q", "q", "z"],
                     "ts": [0, 1, 2, 4, 9, 3]})
    sums = visible_sums(history, queries, pl.col("rating"))
    assert sums["n"].to_list() == [0, 1, 2, 0, 0, 2]
    # (a, y, 2) must not see its own rating 2.0; (a, z, 3) must not see z's 4.0
    assert sums["s"].to_list() == [0, 1, 5, 0, 0, 3]


def test_empty_history():
    history = pl.DataFrame(schema={"user": pl.Utf8, "item": pl.Utf8, "rating": pl.Float64,
                                   "ts": pl.Int64})
    queries = frame({"user": ["a"], "item": ["x"], "ts": [3]})
    assert visible_sums(history, queries, pl.col("rating")).row(0) == (0.0, 0.0)


def test_item_side_sums_and_recent_window():
    history = frame({"user": ["a", "b", "c", "d"], "item": ["x", "x", "x", "x"],
                     "rating": [1.0, 2.0, 4.0, 8.0], "ts": [1, 2, 2, 3]})
    queries = frame({"user": ["e", "e", "c"], "item": ["x", "x", "x"], "ts": [2, 9, 9]})
    sums = visible_sums(history, queries, pl.col("rating"), by="item", recent=2)
    assert sums["n"].to_list() == [3, 4, 3]
    assert sums["s"].to_list() == [7, 15, 11]
    assert sums["n_recent"].to_list() == [2, 2, 1]
    # the last two visible at ts 2 are b (2.0) and c (4.0); at ts 9, c (4.0) and d (8.0)
    assert sums["s_recent"].to_list() == [6, 12, 8]


def test_query_sequences_hold_the_visible_history_then_the_query() -> None:
    import numpy as np

    from starcast.features.sequences import ITEM_INDEX, SIDE_INDEX, query_sequences

    history = pl.DataFrame(
        [("a", "x", 4.0, 1), ("a", "y", 2.0, 2), ("a", "z", 5.0, 3), ("b", "x", 1.0, 1)],
        schema=["user", "item", "rating", "ts"], orient="row",
    ).with_columns(pl.lit(1).alias(ITEM_INDEX), pl.lit(0).alias(SIDE_INDEX))
    queries = pl.DataFrame(
        [("a", "q", 2), ("a", "y", 3), ("c", "x", 9)], schema=["user", "item", "ts"], orient="row"
    ).with_columns(pl.lit(1).alias(ITEM_INDEX), pl.lit(0).alias(SIDE_INDEX))
    seqs = query_sequences(history, queries, np.zeros((3, 1), dtype=np.float32))
    # ts <= 2: x and y, then the query; ts <= 3 without its own (a, y): x and z; c: nothing
    assert seqs.lengths.tolist() == [3, 3, 1]
    assert seqs.rating.tolist() == [4.0, 2.0, 0.0, 4.0, 5.0, 0.0, 0.0]
    assert seqs.is_target.tolist() == [False, False, True, False, False, True, True]
