"""Peers from classic recommender libraries.

The Bayesian factorization machine (myFM, a dependency of the lstm; regression and ordered
probit, see `starcast.models.bayesian_fm`) and, with the optional extra `starcast[peers]`,
Surprise's SVD and SVD++. They fit on train + valid, as the project's reference numbers were
measured, and predict each test event clipped to the scale. They read nothing of the test
period: history that arrives after fitting is beyond them, which is the point of comparing.
"""

from __future__ import annotations

import importlib.util
import time
from dataclasses import dataclass

import numpy as np
import polars as pl

from starcast.data.schema import ITEM, RATING, USER, RatingScale
from starcast.models import bayesian_fm

SURPRISE = ("surprise-svd", "surprise-svdpp")
BAYESIAN_FM = ("bayesian-fm", "bayesian-fm-probit")
PEERS = SURPRISE + BAYESIAN_FM
LIBRARY = {**dict.fromkeys(SURPRISE, "surprise"), **dict.fromkeys(BAYESIAN_FM, "myfm")}


def available(name: str | None = None) -> bool:
    """Whether the library of peer `name` (of every peer, when None) is installed."""
    names = PEERS if name is None else (name,)
    return all(importlib.util.find_spec(LIBRARY[n]) is not None for n in names)


def installed() -> list[str]:
    """The peers whose libraries are installed, in table order."""
    return [name for name in PEERS if available(name)]


@dataclass
class PeerPrediction:
    mean: np.ndarray  # clipped to the scale
    probabilities: np.ndarray | None  # [N, K] star probabilities (the ordered probit)
    fit_seconds: float
    predict_seconds: float


def fit_predict(
    name: str, train: pl.DataFrame, queries: pl.DataFrame, scale: RatingScale, seed: int = 0
) -> PeerPrediction:
    """Peer `name` fitted on `train`, predicting `queries`.

    The Bayesian FM's random seed is 42 + `seed`, so seed 0 is the published setting.
    """
    start = time.perf_counter()
    if name in BAYESIAN_FM:
        out = bayesian_fm.fit_predict(train, queries, scale, name.endswith("probit"), 42 + seed)
        return PeerPrediction(out.mean, out.probabilities,
                              time.perf_counter() - start - out.predict_seconds,
                              out.predict_seconds)
    import surprise

    algorithm = {"surprise-svd": surprise.SVD, "surprise-svdpp": surprise.SVDpp}[name]
    reader = surprise.Reader(rating_scale=(scale.low, scale.high))
    frame = train.select(USER, ITEM, RATING).to_pandas()
    trainset = surprise.Dataset.load_from_df(frame, reader).build_full_trainset()
    model = algorithm(random_state=seed).fit(trainset)
    fitted = time.perf_counter() - start
    start = time.perf_counter()
    pred = np.array([model.predict(u, i).est for u, i in queries.select(USER, ITEM).iter_rows()])
    return PeerPrediction(np.clip(pred, scale.low, scale.high), None, fitted,
                          time.perf_counter() - start)
