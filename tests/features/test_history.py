import polars as pl
from hypothesis import given, settings
from hypothesis import strategies as st

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
    assert sums["n_recent"].to_list() == [2, 2, 2]
    # the last two visible at ts 2 are b (2.0) and c (4.0); at ts 9, c (4.0) and d (8.0);
    # c's own query at ts 9 sees the two before its pair's event taken out: b (2.0), d (8.0)
    assert sums["s_recent"].to_list() == [6, 12, 10]


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


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.sampled_from("abc"), st.sampled_from("xy"), st.integers(1, 5),
                          st.integers(0, 6)), max_size=25),
       st.lists(st.tuples(st.sampled_from("abcd"), st.sampled_from("xyz"), st.integers(0, 7)),
                min_size=1, max_size=8),
       st.integers(1, 4))
def test_recent_window_is_the_last_visible_events_other_than_the_pairs(events, asked, recent):
    """Against the definition, event by event: the item's events with ts <= the query's,
    in (ts, history) order, less the query's own pair's, of which the last `recent`."""
    history = pl.DataFrame(events, schema={"user": pl.Utf8, "item": pl.Utf8,
                                           "rating": pl.Float64, "ts": pl.Int64}, orient="row")
    queries = pl.DataFrame(asked, schema={"user": pl.Utf8, "item": pl.Utf8, "ts": pl.Int64},
                           orient="row")
    sums = visible_sums(history, queries, pl.col("rating"), by="item", recent=recent)
    ordered = sorted(enumerate(events), key=lambda e: (e[1][3], e[0]))
    for (user, item, ts), row in zip(asked, sums.iter_rows(named=True), strict=True):
        seen = [r for _, (u, i, r, t) in ordered if i == item and t <= ts and u != user]
        assert (row["n"], row["s"]) == (len(seen), sum(seen))
        assert (row["n_recent"], row["s_recent"]) == (len(seen[-recent:]), sum(seen[-recent:]))
