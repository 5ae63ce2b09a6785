"""The network's prediction moved toward a Bayesian FM's, by weights fitted on valid.

    prediction = network + weight[group] * (fm - network)

The two disagree most where one of them knows something the other does not: the FM knows
who rated what (and the day), the network reads the order and the history that arrives after
fitting. The weight is the least-squares one on valid (stacking, with both models fitted on
train only), clipped to [0, 1], per group of queries by what the FM lacks: whether it was
fitted on the query's user, and whether the history shows the user's reviews that it was not
fitted on (which only the network reads). A group with too few valid events takes the pooled
weight.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl
import torch

from starcast.config import FMConfig
from starcast.data.schema import ITEM, TS, USER
from starcast.models.bayesian_fm import FactorBase

GROUPS = 4
MIN_GROUP = 50  # valid events a group needs for a weight of its own, else the pooled one
NO_VALID = 0.5  # without valid events to fit a weight: the plain average of the two


@dataclass
class FactorBlend:
    factors: FactorBase
    weights: np.ndarray  # [4] by group: 2 x (user known to the FM) + (reviews new to it)

    @classmethod
    def fit(cls, known: pl.DataFrame, config: FMConfig, seed: int,
            weights: np.ndarray | None = None) -> FactorBlend:
        """The FM fitted on `known`, with these weights (default: NO_VALID for both)."""
        chosen = np.full(GROUPS, NO_VALID) if weights is None else weights
        return cls(FactorBase.fit(known, config, seed), chosen)

    def fm(self, queries: pl.DataFrame) -> np.ndarray:
        return self.factors.predict(queries[USER], queries[ITEM], queries[TS].to_numpy())

    def groups(self, users: pl.Series, visible: np.ndarray) -> np.ndarray:
        """Each query's group, from its user and the user's visible history events."""
        fitted_on = self.factors.user_events(users)
        return 2 * (fitted_on > 0) + (visible > fitted_on)

    def apply(self, network: np.ndarray, queries: pl.DataFrame, visible: np.ndarray) -> np.ndarray:
        """Blended predictions; `visible`: each query's user's visible history events."""
        weight = self.weights[self.groups(queries[USER], visible)]
        return network + weight * (self.fm(queries) - network)

    def fitted_weights(self, network: np.ndarray, queries: pl.DataFrame, visible: np.ndarray,
                       truth: np.ndarray) -> np.ndarray:
        """The least-squares weight per group on these (valid) queries, clipped to [0, 1].

        A group with fewer than MIN_GROUP events takes the weight of all the events with its
        kind of history (reviews new to the FM or not); with too few of those either, 0 where
        there are new reviews (only the network reads them), else the weight of all events.
        """
        gap, residual = self.fm(queries) - network, truth - network
        group = self.groups(queries[USER], visible)
        new = group % 2 == 1

        def fitted(rows: np.ndarray, fallback: float) -> float:
            return _weight(gap[rows], residual[rows]) if rows.sum() >= MIN_GROUP else fallback

        pooled = fitted(np.ones(len(gap), dtype=bool), NO_VALID)
        by_history = [fitted(~new, pooled), fitted(new, 0.0)]
        return np.array([fitted(group == g, by_history[g % 2]) for g in range(GROUPS)])

    def state(self) -> tuple[dict[str, torch.Tensor], dict]:
        arrays, meta = self.factors.state()
        tensors = {f"fm.{k}": torch.from_numpy(np.ascontiguousarray(v)) for k, v in arrays.items()}
        return tensors, meta | {"weights": self.weights.tolist()}

    @classmethod
    def restore(cls, tensors: dict[str, torch.Tensor], meta: dict) -> FactorBlend:
        arrays = {k[3:]: v.numpy() for k, v in tensors.items() if k.startswith("fm.")}
        return cls(FactorBase.restore(arrays, meta), np.asarray(meta["weights"], dtype=float))


def _weight(gap: np.ndarray, residual: np.ndarray) -> float:
    denominator = float(gap @ gap)
    if denominator <= 0:
        return NO_VALID
    return float(np.clip(gap @ residual / denominator, 0.0, 1.0))
