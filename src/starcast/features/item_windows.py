"""Each event's view of its item's own rating history: the item-side recurrent input.

For a target (user, item, ts), the window is the item's last `width` history events strictly
earlier than ts, never the target user's own (so never the target's own rating), oldest
first. Per slot: the rating and log1p of the days between that rating and the target. An
item-side recurrent network reads the window (as in Recurrent Recommender Networks, truncated
to the latest `width` ratings the way user sequences are truncated to chunks).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl

from starcast.data.schema import ITEM, RATING, TS, USER
from starcast.features.history import TS_BITS, group_time_key

DAY = 86_400.0


@dataclass
class ItemWindows:
    rating: np.ndarray  # float32 [n, width], left-aligned, 0 past `length`
    age: np.ndarray  # float32 [n, width], log1p(days before the target)
    length: np.ndarray  # int64 [n]

    @classmethod
    def empty(cls, n: int, width: int) -> ItemWindows:
        zeros = np.zeros((n, width), dtype=np.float32)
        return cls(zeros, zeros.copy(), np.zeros(n, dtype=np.int64))

    def take(self, rows: np.ndarray) -> ItemWindows:
        return ItemWindows(self.rating[rows], self.age[rows], self.length[rows])


def item_windows(history: pl.DataFrame, targets: pl.DataFrame, width: int) -> ItemWindows:
    """Windows for every row of `targets` (user, item, ts) from `history` (+ rating)."""
    if history.is_empty() or targets.is_empty():
        return ItemWindows.empty(targets.height, width)
    codes = pl.concat([history[ITEM], targets[ITEM]]).cast(pl.Categorical).to_physical()
    users = pl.concat([history[USER], targets[USER]]).cast(pl.Categorical).to_physical()
    n_h = history.height
    ts_all = np.r_[history[TS].to_numpy(), targets[TS].to_numpy()].astype(np.int64)
    key = group_time_key(codes.to_numpy(), ts_all, int(ts_all.min()))
    order = np.argsort(key[:n_h], kind="stable")
    h_key, h_user = key[:n_h][order], users.to_numpy()[:n_h][order]
    h_rating = history[RATING].to_numpy().astype(np.float32)[order]
    h_ts = ts_all[:n_h][order]
    t_key, t_user, t_ts = key[n_h:], users.to_numpy()[n_h:], ts_all[n_h:]
    end = np.searchsorted(h_key, t_key, side="left")  # first event not strictly earlier
    start = np.searchsorted(h_key, (t_key >> TS_BITS) << TS_BITS, side="left")
    # newest first: width + 1 candidates, since one may be the target user's own
    cand = end[:, None] - 1 - np.arange(width + 1)[None, :]
    safe = np.maximum(cand, 0)
    keep = (cand >= start[:, None]) & (h_user[safe] != t_user[:, None])
    rank = np.cumsum(keep, axis=1) - 1
    keep &= rank < width
    length = keep.sum(axis=1)
    # slot of a kept candidate, oldest first: length - 1 - rank
    rows, cols = np.nonzero(keep)
    slot = length[rows] - 1 - rank[rows, cols]
    out = ItemWindows.empty(targets.height, width)
    picked = safe[rows, cols]
    out.rating[rows, slot] = h_rating[picked]
    out.age[rows, slot] = np.log1p((t_ts[rows] - h_ts[picked]) / DAY)
    out.length[:] = length
    return out
