"""The Bayesian factorization machine peer (myFM, optional extra `starcast[peers]`).

The setting of Rendle, Zhang & Koren (2019), "On the Difficulty of Evaluating Baselines": the
strongest classic baseline for explicit ratings. Features, each block with its own hierarchical
prior (five groups):

* the day of the event, one-hot (a day unseen in the fitting data takes the latest known day
  before it; one before all of them, the first);
* the user, one-hot, and the items the user rated in the fitting data (each 1/sqrt(n));
* the item, one-hot, and the users who rated it in the fitting data (each 1/sqrt(n)).

Rank 32, 300 Gibbs iterations of which the last 250 are averaged. Regression predicts the
posterior mean; the ordered probit predicts star probabilities and their expected star. The
user and item blocks are myFM relation blocks, so a popular item's raters are stored once.
"""

from __future__ import annotations

import contextlib
import functools
import warnings
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import polars as pl
import scipy.sparse as sps

from starcast.data.schema import ITEM, RATING, TS, USER, RatingScale

DAY = 86_400
RANK, ITERATIONS, KEPT = 32, 300, 250


@dataclass
class FMPrediction:
    mean: np.ndarray  # [Q] clipped to the scale
    probabilities: np.ndarray | None  # [Q, K] for the ordered probit


class _Design:
    """Feature blocks of the fitting data, for its own rows and for queries."""

    def __init__(self, known: pl.DataFrame) -> None:
        self.users = {u: k for k, u in enumerate(known[USER].unique(maintain_order=True))}
        self.items = {i: k for k, i in enumerate(known[ITEM].unique(maintain_order=True))}
        nu, ni = len(self.users), len(self.items)
        u, i = self._index(known[USER], self.users), self._index(known[ITEM], self.items)
        rated = sps.csr_matrix((np.ones(len(u)), (u, i)), shape=(nu, ni))
        self.days = np.unique(known[TS].to_numpy() // DAY)
        # one extra empty row per block: a user or item the fitting data does not know
        self.user_block = _block(sps.identity(nu, format="csr"), _implicit(rated))
        self.item_block = _block(sps.identity(ni, format="csr"), _implicit(rated.T.tocsr()))
        self.grouping = ([0] * len(self.days) + [1] * nu + [2] * ni + [3] * ni + [4] * nu)

    @staticmethod
    def _index(ids: pl.Series, table: dict[str, int]) -> np.ndarray:
        unknown = len(table)
        return np.fromiter((table.get(x, unknown) for x in ids), np.int64, len(ids))

    def rows(self, events: pl.DataFrame) -> tuple[sps.csr_matrix, list]:
        relation = _myfm().RelationBlock
        day = np.searchsorted(self.days, events[TS].to_numpy() // DAY, side="right") - 1
        day = np.maximum(day, 0)
        n = events.height
        X = sps.csr_matrix((np.ones(n), (np.arange(n), day)), shape=(n, len(self.days)))
        relations = [
            relation(self._index(events[USER], self.users), self.user_block),
            relation(self._index(events[ITEM], self.items), self.item_block),
        ]
        return X, relations


def _implicit(rated: sps.csr_matrix) -> sps.csr_matrix:
    """Rows scaled to 1/sqrt(n) per entry (a pair counted once)."""
    rated = rated.copy()
    rated.data[:] = 1.0
    return sps.diags(1 / np.sqrt(np.maximum(rated.getnnz(axis=1), 1))) @ rated


def _block(one_hot: sps.csr_matrix, implicit: sps.csr_matrix) -> sps.csr_matrix:
    rows = sps.hstack([one_hot, implicit], format="csr")
    return sps.vstack([rows, sps.csr_matrix((1, rows.shape[1]))], format="csr")


def fit_predict(
    known: pl.DataFrame, queries: pl.DataFrame, scale: RatingScale, probit: bool, seed: int = 42
) -> FMPrediction:
    """Fit on `known` (train + valid: nothing from the queries' period), predict `queries`."""
    myfm = _myfm()
    design = _Design(known)
    X, relations = design.rows(known)
    Xq, relations_q = design.rows(queries)
    ratings = known[RATING].to_numpy().astype(np.float64)
    common = {"X_rel": relations, "n_iter": ITERATIONS, "n_kept_samples": KEPT,
              "grouping": design.grouping}
    with _quiet():
        if not probit:
            model = myfm.MyFMRegressor(rank=RANK, random_seed=seed).fit(X, ratings, **common)
            mean = model.predict(Xq, relations_q)
            return FMPrediction(np.clip(mean, scale.low, scale.high), None)
        stars = np.rint(ratings - scale.low).astype(np.int64)
        model = myfm.MyFMOrderedProbit(rank=RANK, random_seed=seed).fit(X, stars, **common)
        probs = model.predict_proba(Xq, relations_q)
    levels = scale.low + np.arange(probs.shape[1])
    return FMPrediction(np.clip(probs @ levels, scale.low, scale.high), probs)


def _myfm():
    """myFM 0.4.0 imports pkg_resources, which warns on every import: not the user's concern."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        import myfm
    return myfm


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """myFM draws a tqdm progress bar on every fit; the benchmark reports progress itself."""
    from tqdm import tqdm

    base = _myfm().base
    bar = base.tqdm
    base.tqdm = functools.partial(tqdm, disable=True)
    try:
        yield
    finally:
        base.tqdm = bar
