"""Queries answered from states along their users' histories: one encoder pass per user.

Instead of one sequence per query (the user's visible history, then the query), every user's
history runs once; a query reads the state after its last visible event. The encoder is causal,
so that state is the one the query's own sequence would end in. Cost: the history once, plus
the queries, not queries x history.

A query whose own (user, item) event is visible must not see it. When that event is the last
visible one (a valid event predicted with itself in the history, say), the state just before it
is the answer. Otherwise a state along the history has read it: such queries are marked, to be
answered from their own sequence.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl

from starcast.data.schema import ITEM, TS, USER
from starcast.features.history import group_time_key
from starcast.features.sequences import DAY, ITEM_INDEX, SIDE_INDEX, Sequences, training_sequences


@dataclass
class PrefixQueries:
    seqs: Sequences  # one sequence per user of the queries that has history
    seq: np.ndarray  # int64 [Q]: the query's user's sequence, -1 when the user has no history
    pos: np.ndarray  # int64 [Q]: its last visible position there, -1 when none is visible
    gap: np.ndarray  # float32 [Q]: log1p days since that event (0 without one)
    item: np.ndarray  # int64 [Q]
    side: np.ndarray  # int64 [Q]
    own_visible: np.ndarray  # bool [Q]: must be answered from its own sequence instead


def prefix_queries(history: pl.DataFrame, queries: pl.DataFrame) -> PrefixQueries:
    """`history` and `queries` carry ITEM_INDEX and SIDE_INDEX (history: RATING too)."""
    hist = history.filter(pl.col(USER).is_in(queries[USER].unique().implode()))
    hist = hist.sort([USER, TS, ITEM])
    seqs = training_sequences(hist, np.zeros((hist.height, 1), np.float32), hist.height + 1)
    # user code = its sequence number: hist is sorted by user, so (code, ts) keys are sorted
    codes = hist.select(USER).unique(maintain_order=True).with_row_index("_code")
    q_code = queries.join(codes, on=USER, how="left", maintain_order="left")["_code"]
    seq = q_code.fill_null(-1).to_numpy().astype(np.int64)
    h_code = np.repeat(np.arange(len(seqs), dtype=np.int64), seqs.lengths)
    base = int(min(hist[TS].min(), queries[TS].min())) if hist.height else 0
    h_key = group_time_key(h_code, hist[TS].to_numpy(), base)
    q_key = group_time_key(np.maximum(seq, 0), queries[TS].to_numpy(), base)
    last = np.searchsorted(h_key, q_key, side="right") - 1  # last event with ts <= query ts
    start = seqs.offsets[:-1][np.maximum(seq, 0)] if len(seqs) else np.zeros_like(seq)
    own_row, own_count = _own_visible(hist, queries)
    # the own event last among the visible (a valid event, say): the state just before it
    own_last = (own_count == 1) & (own_row == last)
    last = np.where(own_last, last - 1, last)
    own_visible = (own_count > 0) & ~own_last
    visible = (seq >= 0) & (last >= start)
    pos = np.where(visible, last - start, -1)
    h_ts = hist[TS].to_numpy()
    since = queries[TS].to_numpy() - (h_ts[np.where(visible, last, 0)] if hist.height else 0)
    gap = np.where(visible, np.log1p(np.maximum(since, 0) / DAY), 0.0).astype(np.float32)
    return PrefixQueries(
        seqs, seq, pos.astype(np.int64), gap,
        queries[ITEM_INDEX].to_numpy().astype(np.int64),
        queries[SIDE_INDEX].to_numpy().astype(np.int64),
        own_visible,
    )


def _own_visible(hist: pl.DataFrame, queries: pl.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """Per query: the row in `hist` of its own visible (user, item) event, and how many."""
    q = queries.select(USER, ITEM, TS).with_row_index("_q")
    hits = (
        q.join(hist.select(USER, ITEM, pl.col(TS).alias("_ts_h")).with_row_index("_row"),
               on=[USER, ITEM])
        .filter(pl.col("_ts_h") <= pl.col(TS))
        .group_by("_q")
        .agg(pl.col("_row").max(), pl.len().alias("_n"))
    )
    row = np.full(queries.height, -1, dtype=np.int64)
    count = np.zeros(queries.height, dtype=np.int64)
    index = hits["_q"].to_numpy()
    row[index], count[index] = hits["_row"].to_numpy(), hits["_n"].to_numpy()
    return row, count
