"""Global mean plus regularised user and item biases, fitted by alternating least squares.

With history at predict time, the user's bias is folded in from it: a shrunk mean of the
user's visible residuals. That is how a model fitted on train uses reviews that arrive later.
"""

from __future__ import annotations

import numpy as np
import polars as pl
import torch

from starcast.config import BiasConfig
from starcast.data.schema import ITEM, RATING, USER
from starcast.features.history import visible_sums
from starcast.models.base import Estimate, RatingModel


def fit_biases(
    users: np.ndarray,
    items: np.ndarray,
    ratings: np.ndarray,
    n_users: int,
    n_items: int,
    config: BiasConfig,
) -> tuple[float, np.ndarray, np.ndarray]:
    """ALS for r ~ mu + b_u + b_i with L2 penalties; returns (mu, b_user, b_item)."""
    mu = float(ratings.mean())
    b_user, b_item = np.zeros(n_users), np.zeros(n_items)
    n_u = np.bincount(users, minlength=n_users)
    n_i = np.bincount(items, minlength=n_items)
    for _ in range(config.iterations):
        resid = ratings - mu - b_item[items]
        b_user = np.bincount(users, resid, minlength=n_users) / (n_u + config.reg_user)
        resid = ratings - mu - b_user[users]
        b_item = np.bincount(items, resid, minlength=n_items) / (n_i + config.reg_item)
    return mu, b_user, b_item


class BiasModel(RatingModel):
    name = "bias"

    def __init__(self, config: BiasConfig = BiasConfig(), **kwargs) -> None:
        super().__init__(**kwargs)
        self.config = config

    def _fit(self, train: pl.DataFrame, valid: pl.DataFrame | None) -> None:
        self.mu_, self.b_user_, self.b_item_ = fit_biases(
            self.users_.encode(train[USER]),
            self.items_.encode(train[ITEM]),
            train[RATING].to_numpy(),
            len(self.users_),
            len(self.items_),
            self.config,
        )

    def _estimate(self, history: pl.DataFrame, queries: pl.DataFrame) -> Estimate:
        item_bias = self.b_item_[self.items_.encode(queries[ITEM])]
        return Estimate(self.mu_ + item_bias + self.user_bias(history, queries))

    def user_bias(self, history: pl.DataFrame, queries: pl.DataFrame) -> np.ndarray:
        """Folded in from visible history when there is any history, else the trained bias."""
        if not self.config.fold_in or history.is_empty():
            return self.b_user_[self.users_.encode(queries[USER])]
        residual = (
            pl.col(RATING) - self.mu_ - pl.Series(self.b_item_[self.items_.encode(history[ITEM])])
        )
        sums = visible_sums(history, queries, residual)
        return (sums["s"] / (sums["n"] + self.config.reg_user)).to_numpy()

    def _state(self) -> tuple[dict[str, torch.Tensor], dict]:
        tensors = {
            "b_user": torch.from_numpy(self.b_user_),
            "b_item": torch.from_numpy(self.b_item_),
        }
        return tensors, {"mu": self.mu_}

    def _restore(self, tensors: dict[str, torch.Tensor], meta: dict) -> None:
        self.mu_ = float(meta["mu"])
        self.b_user_, self.b_item_ = tensors["b_user"].numpy(), tensors["b_item"].numpy()


def predictive_shrinkage(residuals: np.ndarray, sums: np.ndarray, counts: np.ndarray) -> float:
    """The user-bias shrinkage that best predicts each event from the user's earlier ones.

    `sums` and `counts` are each event's visible history (its user's residual sum and count,
    as at predict time). The folded-in bias is sums / (counts + shrinkage); the shrinkage is
    chosen on a log grid to minimise the squared error of that forecast over events with
    history, so it answers the question it is used for, on training data only.
    """
    seen = counts > 0
    if not seen.any():
        return 1.0
    r, s, n = residuals[seen], sums[seen], counts[seen]
    grid = np.geomspace(0.05, 50.0, 61)
    errors = [float(np.mean((r - s / (n + lam)) ** 2)) for lam in grid]
    return float(grid[int(np.argmin(errors))])
