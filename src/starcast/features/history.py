"""What each query may see of the history: only the user's events with ts <= the query's ts.

An event of the same (user, item) as the query is never visible to it, so passing the full
data as history cannot leak a rating into its own prediction.
"""

from __future__ import annotations

import polars as pl

from starcast.data.schema import ITEM, TS, USER

_Q = "_query"


def visible_sums(history: pl.DataFrame, queries: pl.DataFrame, value: pl.Expr) -> pl.DataFrame:
    """Per query, in query order: `n` visible history events and `s` the sum of `value` over them."""
    q = queries.select(USER, ITEM, TS).with_row_index(_Q)
    h = history.select(USER, ITEM, TS, value.cast(pl.Float64).alias("_v"))
    running = (
        h.sort([USER, TS])
        .with_columns(
            pl.int_range(1, pl.len() + 1).over(USER).alias("n"),
            pl.col("_v").cum_sum().over(USER).alias("s"),
        )
        # equal timestamps: keep the running total after the last of them
        .group_by([USER, TS], maintain_order=True)
        .last()
        .select(USER, TS, pl.col("n").cast(pl.Float64), "s")
        .sort(TS)
    )
    asof = q.sort(TS).join_asof(
        running, on=TS, by=USER, strategy="backward", check_sortedness=False
    )
    own = (
        q.join(h, on=[USER, ITEM], suffix="_h")
        .filter(pl.col(f"{TS}_h") <= pl.col(TS))
        .group_by(_Q)
        .agg(pl.len().cast(pl.Float64).alias("own_n"), pl.col("_v").sum().alias("own_s"))
    )
    return (
        asof.join(own, on=_Q, how="left")
        .sort(_Q)
        .select(
            (pl.col("n").fill_null(0) - pl.col("own_n").fill_null(0)).alias("n"),
            (pl.col("s").fill_null(0) - pl.col("own_s").fill_null(0)).alias("s"),
        )
    )
