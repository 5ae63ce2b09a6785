"""Where a model fails: metrics per slice of the queries.

Slices: cold-start status (cold user, cold item, both, warm), the user's visible history length
(0, 1-2, 3-5, 6-10, 11-25, >25 earlier events) and the true star.
"""

from __future__ import annotations

import numpy as np
import polars as pl

from starcast.evaluation.metrics import summary

HISTORY_BUCKETS = ((0, 0, "0"), (1, 2, "1-2"), (3, 5, "3-5"), (6, 10, "6-10"),
                   (11, 25, "11-25"), (26, None, ">25"))
KINDS = ("cold_start", "history", "true_rating")


def cold_start_labels(user_cold: np.ndarray, item_cold: np.ndarray) -> np.ndarray:
    labels = np.full(len(user_cold), "warm", dtype=object)
    labels[user_cold & ~item_cold] = "cold user"
    labels[item_cold & ~user_cold] = "cold item"
    labels[user_cold & item_cold] = "both"
    return labels


def history_labels(visible: np.ndarray) -> np.ndarray:
    labels = np.empty(len(visible), dtype=object)
    for low, high, name in HISTORY_BUCKETS:
        labels[(visible >= low) & (visible <= (high if high is not None else np.inf))] = name
    return labels


def slice_metrics(frame: pl.DataFrame) -> dict[str, list[dict]]:
    """For each slice kind, in a fixed order, the count and metrics of every non-empty slice.

    `frame` holds `truth`, `prediction` and one label column per kind in KINDS.
    """
    order = {
        "cold_start": ["warm", "cold user", "cold item", "both"],
        "history": [name for _, _, name in HISTORY_BUCKETS],
        "true_rating": sorted(frame["true_rating"].unique().to_list(), key=int),
    }
    out = {}
    for kind in KINDS:
        rows = []
        for label in order[kind]:
            part = frame.filter(pl.col(kind) == label)
            if part.height:
                metrics = summary(part["truth"].to_numpy(), part["prediction"].to_numpy())
                rows.append({"slice": str(label), "count": metrics.pop("n")} | metrics)
        out[kind] = rows
    return out
