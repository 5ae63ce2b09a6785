import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from starcast.data.splits import split_events
from starcast.errors import DataError


def events(rows):
    return pl.DataFrame(
        rows, schema={"user": pl.Utf8, "item": pl.Utf8, "rating": pl.Float64, "ts": pl.Int64},
        orient="row",
    )


def triples(frame):
    return [(u, i, int(t)) for u, i, _, t in frame.iter_rows()]


def test_loo_hand_computed_with_ties_short_users_and_duplicates():
    data = events([
        ("a", "x", 5, 10), ("a", "y", 4, 20), ("a", "z", 3, 20),  # tie at 20: z after y
        ("a", "w", 2, 5),
        ("a", "x", 1, 30),  # duplicate (a, x): the later ts wins, so x moves to ts 30
        ("b", "x", 5, 1), ("b", "y", 4, 2),  # two events: all train
        ("c", "x", 3, 7),  # one event: train
        ("d", "p", 4, 3), ("d", "q", 2, 3), ("d", "r", 1, 3),  # all tied: order by item
    ])
    split = split_events(data, "loo")
    assert split.duplicates_removed == 1
    assert triples(split.test) == [("d", "r", 3), ("a", "x", 30)]
    assert triples(split.valid) == [("d", "q", 3), ("a", "z", 20)]
    assert sorted(triples(split.train)) == sorted([
        ("a", "w", 5), ("a", "y", 20), ("b", "x", 1), ("b", "y", 2), ("c", "x", 7), ("d", "p", 3),
    ])
    assert split.test.filter(pl.col("item") == "x")["rating"].item() == 1.0


def test_duplicate_on_equal_ts_keeps_later_line():
    data = events([("a", "x", 5, 10), ("a", "x", 2, 10), ("a", "y", 3, 11), ("a", "z", 3, 12)])
    split = split_events(data, "loo")
    assert split.train["rating"].to_list() == [2.0]


def test_time_sizes_and_order():
    data = events([(f"u{i % 3}", f"i{i}", 1 + i % 5, 100 - i) for i in range(23)])
    split = split_events(data, "time")
    # floor(0.8*23)=18, floor(0.9*23)-18=2, rest 3
    assert (split.train.height, split.valid.height, split.test.height) == (18, 2, 3)
    assert split.train["ts"].max() <= split.valid["ts"].min()
    assert split.valid["ts"].max() <= split.test["ts"].min()
    assert [t for _, _, t in triples(split.test)] == [98, 99, 100]


def test_time_tie_breaks_by_user_then_item():
    data = events([("b", "x", 1, 10), ("a", "y", 1, 10), ("a", "x", 1, 10)] + [
        ("c", f"i{k}", 1, k) for k in range(7)
    ])
    split = split_events(data, "time")
    assert triples(split.test) == [("b", "x", 10)]
    assert triples(split.valid) == [("a", "y", 10)]


def test_unknown_protocol_is_a_data_error():
    with pytest.raises(DataError, match="protocol"):
        split_events(events([("a", "x", 1, 1)]), "random")


rows = st.lists(
    st.tuples(st.sampled_from("abcde"), st.sampled_from("pqrstuv"), st.integers(1, 5),
              st.integers(0, 20)),
    max_size=60,
)


@settings(max_examples=60, deadline=None)
@given(rows, st.sampled_from(["loo", "time"]))
def test_split_partitions_the_unique_events(data_rows, protocol):
    data = events(data_rows)
    split = split_events(data, protocol)
    parts = pl.concat([split.train, split.valid, split.test])
    unique_pairs = {(u, i) for u, i, _, _ in data_rows}
    assert parts.height + split.duplicates_removed == len(data_rows)
    assert set(zip(parts["user"], parts["item"], strict=True)) == unique_pairs
    again = split_events(data, protocol)
    assert again.test.equals(split.test) and again.train.equals(split.train)
    if protocol == "loo":
        # no user's valid or test event precedes one of its train events
        for name in ("valid", "test"):
            later = getattr(split, name).join(split.train, on="user", suffix="_t")
            assert (later["ts"] >= later["ts_t"]).all()
