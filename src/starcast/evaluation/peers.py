"""Peers from the classic recommender library Surprise (optional extra `starcast[peers]`).

They fit on train + valid with Surprise's defaults, as the reference numbers of the project
were measured, and predict each test event clipped to the scale. They cannot read history
that arrives after fitting: that is the point of comparing with them.
"""

from __future__ import annotations

import time

import numpy as np
import polars as pl

from starcast.data.schema import ITEM, RATING, USER, RatingScale

PEERS = ("surprise-svd", "surprise-svdpp")


def available() -> bool:
    try:
        import surprise  # noqa: F401
    except ImportError:
        return False
    return True


def fit_predict(
    name: str, train: pl.DataFrame, queries: pl.DataFrame, scale: RatingScale, seed: int = 0
) -> tuple[np.ndarray, float, float]:
    """(predictions, fit seconds, predict seconds) of Surprise's SVD or SVD++."""
    import surprise

    algorithm = {"surprise-svd": surprise.SVD, "surprise-svdpp": surprise.SVDpp}[name]
    reader = surprise.Reader(rating_scale=(scale.low, scale.high))
    frame = train.select(USER, ITEM, RATING).to_pandas()
    trainset = surprise.Dataset.load_from_df(frame, reader).build_full_trainset()
    start = time.perf_counter()
    model = algorithm(random_state=seed).fit(trainset)
    fitted = time.perf_counter() - start
    start = time.perf_counter()
    pred = np.array([model.predict(u, i).est for u, i in queries.select(USER, ITEM).iter_rows()])
    return np.clip(pred, scale.low, scale.high), fitted, time.perf_counter() - start
