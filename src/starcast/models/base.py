"""The one base every rating model stands on (after Surprise's AlgoBase).

It does the shared work: id vocabularies, the fitted check, which queries are cold, clipping to
the rating scale and the predictions frame. A model writes `_fit` and `_estimate` only.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, ClassVar, Self

import numpy as np
import polars as pl
import torch

from starcast.config import TrainConfig
from starcast.data.frames import as_table
from starcast.data.schema import (
    EVENT_COLUMNS,
    ITEM,
    QUERY_COLUMNS,
    RATING,
    USER,
    RatingScale,
    empty_events,
)
from starcast.errors import ConfigError, NotFittedError
from starcast.features.history import visible_counts, visible_sums
from starcast.features.vocab import COLD, Vocabulary
from starcast.models.stars import (
    StarCalibration,
    StarContext,
    StarCosts,
    share_variance,
    star_index,
    star_shares,
    surprise_share,
    with_surprise,
)
from starcast.training.distributed import Cluster


def star_context(
    history: pl.DataFrame, queries: pl.DataFrame, item_cold: np.ndarray
) -> StarContext:
    """Each query's StarContext from the history visible to it."""
    sums = visible_sums(history, queries, pl.col(RATING))
    squares = visible_sums(history, queries, pl.col(RATING) ** 2)["s"].to_numpy()
    return StarContext(sums["n"].to_numpy(), item_cold, sums["s"].to_numpy(), squares)


@dataclass
class Estimate:
    """Raw model output for each query: a point prediction and, optionally, star probabilities."""

    mean: np.ndarray
    probabilities: np.ndarray | None = None


class RatingModel(ABC):
    """fit(train, valid) -> self; predict(history, queries) -> one row per query, in order."""

    name: ClassVar[str]
    data_parallel: ClassVar[bool] = False  # trains on a shard per process under torchrun

    def __init__(self, scale: RatingScale = RatingScale()) -> None:
        self.scale = scale

    def fit(
        self,
        train: pl.DataFrame,
        valid: pl.DataFrame | None = None,
        items: pl.DataFrame | None = None,
    ) -> Self:
        """Fit on `train` (early stopping on `valid` where a model trains iteratively).

        `items` holds item side features (ITEM_SCHEMA); models without a use for them ignore
        them.
        """
        train = as_table(train, EVENT_COLUMNS, "train")
        valid = None if valid is None else as_table(valid, EVENT_COLUMNS, "valid")
        world = Cluster.current().world
        if world > 1 and not self.data_parallel:
            raise ConfigError(
                f"model {self.name!r} does not train data-parallel ({world} processes); "
                "train it in one process"
            )
        self.users_ = Vocabulary.build(train[USER])
        self.items_ = Vocabulary.build(train[ITEM])
        self._take_items(items)
        self._fit(train, valid)
        self._fit_stars(train, valid)
        return self

    def _fit_stars(self, train: pl.DataFrame, valid: pl.DataFrame | None) -> None:
        """The balanced reading's costs (star shares of every rating fitted on) and, for a
        model without probabilities of its own, the star calibration (models.stars) from
        valid as the model fitted on train predicts it (without valid: train, in sample).
        That prediction of valid is kept as `valid_prediction_` (None without valid), as
        scikit-learn keeps `oob_prediction_`: what comparing models on valid needs."""
        has_valid = valid is not None and not valid.is_empty()
        ratings = np.r_[train[RATING].to_numpy(), valid[RATING].to_numpy() if has_valid else []]
        self.shares_ = star_shares(ratings, self.scale.low, self.scale.stars)
        self.costs_ = StarCosts.inverse_share(self.shares_)
        held = valid if has_valid else train
        estimate = self._held_out_estimate(train, valid) if has_valid else self._estimate(
            train, train)
        mean = np.clip(estimate.mean, self.scale.low, self.scale.high)
        self.valid_prediction_ = mean if has_valid else None
        self.stars_, self.surprise_ = None, 0.0
        if estimate.probabilities is None:
            new_item = ~held[ITEM].is_in(train[ITEM].implode()).to_numpy()
            self.stars_ = StarCalibration.fit(mean, held[RATING].to_numpy(),
                                              star_context(train, held, new_item),
                                              share_variance(self.shares_, self.scale.low),
                                              self.scale.low, self.scale.stars)
        else:  # its own probabilities keep a surprise share too (models.stars)
            index = star_index(held[RATING].to_numpy(), self.scale.low, self.scale.stars)
            p_true = estimate.probabilities[np.arange(len(index)), index]
            self.surprise_ = surprise_share(p_true, self.scale.stars)

    def own_stars(self, probabilities: np.ndarray) -> np.ndarray:
        """[N, K]: the model's own star probabilities as read, with its surprise share."""
        return with_surprise(np.asarray(probabilities, dtype=np.float64), self.surprise_)

    def _held_out_estimate(self, train: pl.DataFrame, valid: pl.DataFrame) -> Estimate:
        """Valid as predicted by the model fitted on train alone (a model that refits on
        train + valid keeps this from before its refit)."""
        return self._estimate(train, valid)

    def predict(
        self, history: pl.DataFrame | None, queries: pl.DataFrame,
        costs: StarCosts | None = None,
    ) -> pl.DataFrame:
        """Predict each query from training plus the history events visible to it.

        Returns columns user, item, ts, prediction (the expected star), balanced (the star of
        least expected cost: `costs`, else the model's inverse-share costs), cold, p1..pK.
        """
        self._check_fitted()
        queries = as_table(queries, QUERY_COLUMNS, "queries")
        history = empty_events() if history is None else as_table(history, EVENT_COLUMNS,
                                                                  "history")
        estimate = self._estimate(history, queries)
        mean = np.clip(estimate.mean, self.scale.low, self.scale.high)
        probs, visible = estimate.probabilities, None
        if probs is not None:
            probs = self.own_stars(probs)
        elif self.stars_ is not None:
            item_cold = self.items_.encode(queries[ITEM]) == COLD
            context = star_context(history, queries, item_cold)
            probs, visible = self.stars_.probabilities(mean, context), context.visible
        parts = self.coldness(history, queries, visible)
        columns = {"prediction": mean}
        if probs is not None:
            columns["balanced"] = (costs or self.costs_).balanced(probs, self.scale.low)
        columns["cold"] = parts["item_cold"] | parts["user_cold"]
        if probs is not None:
            columns |= {f"p{k + 1}": probs[:, k] for k in range(probs.shape[1])}
        return queries.with_columns(pl.Series(name, values) for name, values in columns.items())

    def coldness(
        self, history: pl.DataFrame, queries: pl.DataFrame, visible: np.ndarray | None = None
    ) -> dict[str, np.ndarray]:
        """Per query: `item_cold` (item unseen in training), `user_cold` (user with neither
        training events nor visible history) and `visible` (the user's visible history events;
        counted here unless given).
        """
        self._check_fitted()
        if visible is None:
            visible = visible_counts(history, queries)
        visible = np.asarray(visible).astype(np.int64)
        return {
            "item_cold": self.items_.encode(queries[ITEM]) == COLD,
            "user_cold": (self.users_.encode(queries[USER]) == COLD) & (visible == 0),
            "visible": visible,
        }

    def get_state(self) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        """Fitted state as named tensors (for safetensors) and JSON-ready metadata."""
        self._check_fitted()
        tensors, meta = self._state()
        meta = meta | {"users": self.users_.to_list(), "items": self.items_.to_list(),
                       "star_shares": self.shares_.tolist(),
                       "star_costs": self.costs_.matrix.tolist()}
        if self.stars_ is not None:
            meta["star_calibration"] = self.stars_.state()
        meta["star_surprise"] = self.surprise_
        return {k: v.detach().cpu().contiguous() for k, v in tensors.items()}, meta

    def set_state(self, tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> Self:
        """Restore what `get_state` returned; the model must be built with the same config."""
        self.users_ = Vocabulary(meta["users"])
        self.items_ = Vocabulary(meta["items"])
        # (a model saved before star readings: even shares, plain MAE)
        stars = self.scale.stars
        self.shares_ = np.asarray(meta.get("star_shares", np.full(stars, 1 / stars)))
        costs = meta.get("star_costs")
        self.costs_ = (StarCosts.of_weights(np.ones(stars)) if costs is None
                       else StarCosts(np.asarray(costs, dtype=np.float64)))
        calibration = meta.get("star_calibration")
        self.stars_ = None if calibration is None else StarCalibration.restore(calibration)
        self.surprise_ = float(meta.get("star_surprise", 0.0))  # (0: saved before it)
        self.valid_prediction_ = None  # (a fitting-time reading, not saved)
        self._restore(tensors, meta)
        return self

    def _check_fitted(self) -> None:
        if not hasattr(self, "items_"):
            raise NotFittedError(f"{type(self).__name__} is not fitted: call fit() first")

    def _take_items(self, items: pl.DataFrame | None) -> None:  # noqa: B027 (optional hook)
        """Keep what the model needs of the item features (most models need nothing)."""

    @abstractmethod
    def _fit(self, train: pl.DataFrame, valid: pl.DataFrame | None) -> None: ...

    @abstractmethod
    def _estimate(self, history: pl.DataFrame, queries: pl.DataFrame) -> Estimate: ...

    @abstractmethod
    def _state(self) -> tuple[dict[str, torch.Tensor], dict[str, Any]]: ...

    @abstractmethod
    def _restore(self, tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> None: ...


class TrainedModel(RatingModel):
    """A model with settings of its own (`config`, which has `epochs`; `config_type()` when not
    given) and of the training run (`train`: seed, device, threads, an epoch override)."""

    config_type: ClassVar[type]

    def __init__(
        self, config: Any = None, train: TrainConfig = TrainConfig(),
        scale: RatingScale = RatingScale(),
    ) -> None:
        super().__init__(scale=scale)
        self.config = config if config is not None else self.config_type()
        self.train_config = train

    @property
    def epochs(self) -> int:
        return self.train_config.epochs_or(self.config.epochs)
