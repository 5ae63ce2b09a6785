"""The item-side window: the item's latest ratings strictly before the target, never its own."""

import numpy as np
import polars as pl

from starcast.features.item_windows import DAY, item_windows


def frame(rows, columns):
    return pl.DataFrame(rows, schema=columns, orient="row")


HISTORY = frame(
    [("a", "x", 1.0, 0), ("b", "x", 2.0, DAY), ("c", "x", 3.0, 2 * DAY), ("d", "x", 4.0, 3 * DAY),
     ("a", "y", 5.0, 0)],
    ["user", "item", "rating", "ts"],
)


def test_latest_width_events_strictly_before_oldest_first() -> None:
    targets = frame(
        [("z", "x", int(3 * DAY)), ("z", "y", 0), ("z", "new", 9)], ["user", "item", "ts"]
    )
    w = item_windows(HISTORY.with_columns(pl.col("ts").cast(pl.Int64)), targets, width=2)
    assert w.length.tolist() == [2, 0, 0]  # d's rating is at the same second: not earlier
    assert w.rating[0].tolist() == [2.0, 3.0]
    assert np.allclose(w.age[0], np.log1p([2.0, 1.0]))


def test_the_target_users_own_rating_is_skipped() -> None:
    targets = frame([("c", "x", int(10 * DAY))], ["user", "item", "ts"])
    w = item_windows(HISTORY.with_columns(pl.col("ts").cast(pl.Int64)), targets, width=3)
    assert w.rating[0].tolist() == [1.0, 2.0, 4.0]
