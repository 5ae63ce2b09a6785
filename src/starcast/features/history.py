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
    events, so a training target (whose own event is the latest of its key) and a query on an
    unrated pair both read the `recent` events before them.
    """
    q = queries.select(USER, ITEM, TS).with_row_index(_Q)
    h = history.select(USER, ITEM, TS, value.cast(pl.Float64).alias("_v"))
    per_event = _running_sums(h, by)
    per_second = per_event.group_by([by, TS], maintain_order=True).last().sort(TS)
    asof = (
        q.sort(TS)
        .join_asof(per_second.select(by, TS, "n", "s"), on=TS, by=by, strategy="backward",
                   check_sortedness=False)
        .sort(_Q)
        .with_columns(pl.col("n", "s").fill_null(0))
    )
    own = _own_events(q, per_event)
    own_n = np.bincount(own[_Q], minlength=q.height).astype(np.float64)
    own_s = np.bincount(own[_Q], weights=own["_v"], minlength=q.height)
    n, s = asof["n"].to_numpy(), asof["s"].to_numpy()
    out = pl.DataFrame({"n": n - own_n, "s": s - own_s})
    if recent:
        start, inside_n, inside_s = _window_start(n, own, recent)
        back = _sums_at(per_event, by, asof[by], start)
        out = out.with_columns(pl.Series("n_recent", n - start - inside_n),
                               pl.Series("s_recent", s - back - inside_s))
    return out


def _window_start(n: np.ndarray, own: pl.DataFrame, recent: int):
    """(start, own events after it, their sum) per query: the position (events of the key)
    after which its last `recent` events other than its own pair's lie. Each own event inside
    the window moves its start one back, which may take in another: a fixed point, reached
    within as many rounds as the pair has events."""
    rows, pos, v = own[_Q].to_numpy(), own["n"].to_numpy(), own["_v"].to_numpy()
    start = np.maximum(n - recent, 0)
    while True:
        inside = pos > start[rows]
        inside_n = np.bincount(rows[inside], minlength=len(n)).astype(np.float64)
        moved = np.maximum(n - recent - inside_n, 0)
        if np.array_equal(moved, start):
            return start, inside_n, np.bincount(rows[inside], weights=v[inside],
                                                minlength=len(n))
        start = moved


def _sums_at(per_event: pl.DataFrame, by: str, keys: pl.Series,
             position: np.ndarray) -> np.ndarray:
    """The running sum of each query's key after its first `position` events (0 at 0)."""
    asked = pl.DataFrame({by: keys, "n": position}).with_row_index(_Q)
    found = asked.join(per_event.select(by, "n", "s"), on=[by, "n"], how="left")
    return found.sort(_Q)["s"].fill_null(0).to_numpy()


def visible_counts(history: pl.DataFrame, queries: pl.DataFrame) -> np.ndarray:
    """Per query, in query order: its user's history events visible to it."""
    return visible_sums(history, queries, pl.lit(1.0))["n"].to_numpy()


def _running_sums(h: pl.DataFrame, by: str) -> pl.DataFrame:
    """Per event, in (key, ts) order: the key first, then its running count `n` (the event's
    position) and sum `s` after it, and the event's pair and value."""
    other = ITEM if by == USER else USER
    return (
        h.sort([by, TS], maintain_order=True)
        .with_columns(
            pl.int_range(1, pl.len() + 1).over(by).cast(pl.Float64).alias("n"),
            pl.col("_v").cum_sum().over(by).alias("s"),
        )
        .select(by, TS, "n", "s", other, "_v")
    )


def _own_events(q: pl.DataFrame, per_event: pl.DataFrame) -> pl.DataFrame:
    """The events of each query's own (user, item) pair visible to it: query row, the
    event's position among its key's events, its value."""
    return (
        q.join(per_event, on=[USER, ITEM], suffix="_h")
        .filter(pl.col(f"{TS}_h") <= pl.col(TS))
        .select(pl.col(_Q).cast(pl.Int64), "n", "_v")
    )
