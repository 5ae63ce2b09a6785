"""What each query may see of the history: only events with ts <= the query's ts.

Events are grouped by the user (or, for item-side features, by the item). An event of the same
(user, item) as the query is never visible to it, so passing the full data as history cannot
leak a rating into its own prediction.
"""

from __future__ import annotations

import numpy as np
import polars as pl

from starcast.data.schema import ITEM, TS, USER

_Q = "_query"
TS_BITS = 34  # in a group-and-time key: the group code above these bits, the ts below


def group_time_key(group: np.ndarray, ts: np.ndarray, base: int) -> np.ndarray:
    """One int64 per event that sorts by (group, ts): `group << TS_BITS | ts - base`.

    `base` must be at most every ts, and ts - base below 2**TS_BITS (544 years of seconds).
    """
    return (group.astype(np.int64) << TS_BITS) | (ts.astype(np.int64) - base)


def visible_sums(
    history: pl.DataFrame,
    queries: pl.DataFrame,
    value: pl.Expr,
    by: str = USER,
    recent: int = 0,
) -> pl.DataFrame:
    """Per query, in query order: `n` visible events of its `by` key and `s` the sum of `value`.

    With `recent` > 0 also `n_recent`, `s_recent`: the same over the last `recent` visible
    events (the query's own pair is subtracted wherever it falls, an approximation that can
    leave one event too few in the window).
    """
    q = queries.select(USER, ITEM, TS).with_row_index(_Q)
    h = history.select(USER, ITEM, TS, value.cast(pl.Float64).alias("_v"))
    per_event = _running_sums(h, by)
    per_second = per_event.group_by([by, TS], maintain_order=True).last().sort(TS)
    asof = q.sort(TS).join_asof(
        per_second, on=TS, by=by, strategy="backward", check_sortedness=False
    )
    columns = [
        (pl.col("n").fill_null(0) - pl.col("own_n")).alias("n"),
        (pl.col("s").fill_null(0) - pl.col("own_s")).alias("s"),
    ]
    if recent:
        back = per_event.select(by, (pl.col("n") + recent).alias("n"), pl.col("s").alias("s_back"))
        asof = asof.join(back, on=[by, "n"], how="left")
        n_recent = pl.min_horizontal(pl.col("n").fill_null(0), recent)
        columns += [
            (n_recent - pl.col("own_n")).alias("n_recent"),
            (pl.col("s").fill_null(0) - pl.col("s_back").fill_null(0) - pl.col("own_s")).alias(
                "s_recent"
            ),
        ]
    own = _own_pair(q, h)
    return (
        asof.join(own, on=_Q, how="left")
        .with_columns(pl.col("own_n", "own_s").fill_null(0))
        .sort(_Q)
        .select(columns)
    )


def visible_counts(history: pl.DataFrame, queries: pl.DataFrame) -> np.ndarray:
    """Per query, in query order: its user's history events visible to it."""
    return visible_sums(history, queries, pl.lit(1.0))["n"].to_numpy()


def _running_sums(h: pl.DataFrame, by: str) -> pl.DataFrame:
    """Running count and sum per key after each of its events, in (key, ts) order."""
    return (
        h.sort([by, TS])
        .with_columns(
            pl.int_range(1, pl.len() + 1).over(by).cast(pl.Float64).alias("n"),
            pl.col("_v").cum_sum().over(by).alias("s"),
        )
        .select(by, TS, "n", "s")
    )


def _own_pair(q: pl.DataFrame, h: pl.DataFrame) -> pl.DataFrame:
    return (
        q.join(h, on=[USER, ITEM], suffix="_h")
        .filter(pl.col(f"{TS}_h") <= pl.col(TS))
        .group_by(_Q)
        .agg(pl.len().cast(pl.Float64).alias("own_n"), pl.col("_v").sum().alias("own_s"))
    )
