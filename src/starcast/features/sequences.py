"""Per-user event sequences, stored flat, for recurrent models.

Position t of a sequence is predicted from the state after positions < t. Training sequences
are a user's own events (every position a target); a query sequence is the user's visible
history followed by the query itself (only the last position a target).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl
import torch

from starcast.data.schema import ITEM, RATING, TS, USER
from starcast.features.history import visible_sums
from starcast.features.item_windows import ItemWindows

ITEM_INDEX = "_item"  # the item's vocabulary index
SIDE_INDEX = "_side"  # the item's row in the side-feature table (0: none)
RESIDUAL = "_resid"  # rating minus global mean and the item's trained bias
# visible residual sums and counts: the user's, the item's, and the item's most recent ones
FEATURES = ("user_sum", "user_n", "item_sum", "item_n", "item_recent_sum", "item_recent_n")
RECENT = 10
DAY = 86_400.0


@dataclass
class Sequences:
    """Many sequences stored flat: sequence s spans offsets[s]:offsets[s + 1]."""

    item: np.ndarray  # int64
    side: np.ndarray  # int64, row in the side-feature table
    rating: np.ndarray  # float32, the rating as input (0 where unknown)
    gap: np.ndarray  # float32, log1p of days since the previous position (0 at the first)
    feats: np.ndarray  # float32 [N, F], target-side features
    target: np.ndarray  # float32, true rating (nan where unknown)
    is_target: np.ndarray  # bool
    offsets: np.ndarray  # int64 [S + 1]
    follows: np.ndarray  # int64 [S]: the chunk this sequence continues (its user's), else -1
    window: ItemWindows | None = None  # per position: the item's own latest ratings

    @property
    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def pad(self, ids: np.ndarray, device: torch.device) -> dict[str, torch.Tensor]:
        """Sequences `ids` as right-padded tensors [B, T]; `mask` marks real target positions."""
        lengths = self.lengths[ids]
        steps = np.arange(lengths.max())
        real = steps[None, :] < lengths[:, None]
        flat = np.where(real, self.offsets[ids][:, None] + steps[None, :], 0)
        as_tensor = lambda a: torch.from_numpy(np.ascontiguousarray(a)).to(device)  # noqa: E731
        return {
            "item": as_tensor(self.item[flat]),
            "side": as_tensor(self.side[flat]),
            "rating": as_tensor(self.rating[flat]),
            "gap": as_tensor(self.gap[flat]),
            "feats": as_tensor(self.feats[flat]),
            "target": as_tensor(np.nan_to_num(self.target[flat])),
            "mask": as_tensor(real & self.is_target[flat]),
        } | self._pad_window(flat, as_tensor)

    def _pad_window(self, flat: np.ndarray, as_tensor) -> dict[str, torch.Tensor]:
        if self.window is None:
            return {}
        w = self.window
        return {
            "win_rating": as_tensor(w.rating[flat]),
            "win_age": as_tensor(w.age[flat]),
            "win_length": as_tensor(w.length[flat]),
        }


def target_features(history: pl.DataFrame, queries: pl.DataFrame) -> np.ndarray:
    """FEATURES for each query from the history visible to it (history carries RESIDUAL)."""
    value = pl.col(RESIDUAL)
    user = visible_sums(history, queries, value, by=USER)
    item = visible_sums(history, queries, value, by=ITEM, recent=RECENT)
    cols = [user["s"], user["n"], item["s"], item["n"], item["s_recent"], item["n_recent"]]
    return np.column_stack([c.to_numpy() for c in cols]).astype(np.float32)


def _gaps(ts: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    gap = np.zeros(len(ts), dtype=np.float32)
    gap[1:] = np.log1p(np.maximum(np.diff(ts), 0) / DAY)
    gap[offsets[:-1][offsets[:-1] < len(ts)]] = 0.0
    return gap


def training_sequences(
    events: pl.DataFrame, feats: np.ndarray, max_len: int, window: ItemWindows | None = None,
    context: int = 0,
) -> Sequences:
    """Each user's events in (ts, item) order, cut into chunks of at most `max_len` targets.

    `context` 0: a chunk continues from its predecessor's state (`follows`). Otherwise each
    chunk starts with up to `context` of its user's earlier events as inputs only (not
    targets), for encoders that read a window of the latest events rather than a state.
    `events` must already be sorted by (user, ts, item) and carry ITEM_INDEX and SIDE_INDEX;
    `feats` and `window` align with it.
    """
    users = events[USER].to_numpy()
    n = len(users)
    new_user = np.r_[True, users[1:] != users[:-1]] if n else np.zeros(0, dtype=bool)
    user_start = np.maximum.accumulate(np.where(new_user, np.arange(n), 0)) if n else new_user
    position = np.arange(n) - user_start
    starts = np.flatnonzero(new_user | (position % max_len == 0))
    ends = np.r_[starts[1:], n].astype(np.int64)
    first = np.maximum(starts - context, user_start[starts]) if context else starts
    offsets = np.r_[0, np.cumsum(ends - first)].astype(np.int64)
    take = np.repeat(first - offsets[:-1], ends - first) + np.arange(offsets[-1])
    follows = (np.full(len(starts), -1, dtype=np.int64) if context
               else np.where(new_user[starts], -1, np.arange(len(starts)) - 1))
    ratings = events[RATING].to_numpy().astype(np.float32)
    # gaps along the user's whole sequence: a chunk's first step continues its user's time
    user_offsets = np.r_[np.flatnonzero(new_user), n]
    return Sequences(
        item=events[ITEM_INDEX].to_numpy().astype(np.int64)[take],
        side=events[SIDE_INDEX].to_numpy().astype(np.int64)[take],
        rating=ratings[take],
        gap=_gaps(events[TS].to_numpy(), user_offsets)[take],
        feats=feats[take],
        target=ratings[take],
        is_target=take >= np.repeat(starts, ends - first),
        offsets=offsets,
        follows=follows,
        window=None if window is None else window.take(take),
    )


def query_sequences(
    history: pl.DataFrame,
    queries: pl.DataFrame,
    feats: np.ndarray,
    window: ItemWindows | None = None,
) -> Sequences:
    """For each query: the user's visible history events, all of them, then the query.

    Visible means ts <= the query's ts and not the query's own (user, item) event.
    `history` carries ITEM_INDEX and SIDE_INDEX; `queries` too, and RATING when it is known
    (for validation).
    """
    hist = history.sort([USER, TS, ITEM]).with_row_index("_pos")
    prefix = _visible_positions(hist, queries)
    counts = (
        np.bincount(prefix["_query"], minlength=queries.height)
        if len(prefix["_pos"])
        else (np.zeros(queries.height, dtype=np.int64))
    )
    offsets = np.r_[0, np.cumsum(counts + 1)].astype(np.int64)
    n = offsets[-1]
    last = offsets[1:] - 1
    slot = np.ones(n, dtype=bool)
    slot[last] = False
    pos = prefix["_pos"]
    take = lambda col, dtype: hist[col].to_numpy()[pos].astype(dtype)  # noqa: E731
    item, side = np.zeros(n, np.int64), np.zeros(n, np.int64)
    rating, ts = np.zeros(n, np.float32), np.zeros(n, np.int64)
    item[slot], side[slot], rating[slot], ts[slot] = (
        take(ITEM_INDEX, np.int64),
        take(SIDE_INDEX, np.int64),
        take(RATING, np.float32),
        take(TS, np.int64),
    )
    item[last] = queries[ITEM_INDEX].to_numpy()
    side[last] = queries[SIDE_INDEX].to_numpy()
    ts[last] = queries[TS].to_numpy()
    target = np.full(n, np.nan, dtype=np.float32)
    if RATING in queries.columns:
        target[last] = queries[RATING].to_numpy()
    all_feats = np.zeros((n, feats.shape[1]), dtype=np.float32)
    all_feats[last] = feats
    is_target = np.zeros(n, dtype=bool)
    is_target[last] = True
    follows = np.full(len(offsets) - 1, -1, dtype=np.int64)
    full_window = None
    if window is not None:  # only the query positions are predicted, so only they need one
        full_window = ItemWindows.empty(n, window.rating.shape[1])
        full_window.rating[last], full_window.age[last] = window.rating, window.age
        full_window.length[last] = window.length
    return Sequences(
        item, side, rating, _gaps(ts, offsets), all_feats, target, is_target, offsets, follows,
        full_window,
    )


def _visible_positions(hist: pl.DataFrame, queries: pl.DataFrame) -> dict[str, np.ndarray]:
    """(query, history position) pairs: each query's visible events, in order."""
    q = queries.select(USER, ITEM, TS).with_row_index("_query")
    pairs = (
        q.join(hist.select(USER, ITEM, TS, "_pos"), on=USER, suffix="_h")
        .filter((pl.col(f"{TS}_h") <= pl.col(TS)) & (pl.col(f"{ITEM}_h") != pl.col(ITEM)))
        .sort(["_query", "_pos"])
    )
    return {
        "_query": pairs["_query"].to_numpy().astype(np.int64),
        "_pos": pairs["_pos"].to_numpy().astype(np.int64),
    }
