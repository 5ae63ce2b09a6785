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
from starcast.data.schema import ITEM, QUERY_COLUMNS, USER, RatingScale, empty_events
from starcast.errors import ConfigError, NotFittedError
from starcast.features.history import visible_counts
from starcast.features.vocab import COLD, Vocabulary
from starcast.training.distributed import Cluster


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
        return self

    def predict(self, history: pl.DataFrame | None, queries: pl.DataFrame) -> pl.DataFrame:
        """Predict each query from training plus the history events visible to it.

        Returns columns user, item, ts, prediction, cold (+ p1..pK for probabilistic models).
        """
        self._check_fitted()
        queries = queries.select(QUERY_COLUMNS)
        history = empty_events() if history is None else history
        estimate = self._estimate(history, queries)
        out = queries.with_columns(
            pl.Series("prediction", np.clip(estimate.mean, self.scale.low, self.scale.high)),
            pl.Series("cold", self.cold_mask(history, queries)),
        )
        if estimate.probabilities is not None:
            out = out.with_columns(
                pl.Series(f"p{k + 1}", estimate.probabilities[:, k])
                for k in range(estimate.probabilities.shape[1])
            )
        return out

    def cold_mask(self, history: pl.DataFrame, queries: pl.DataFrame) -> np.ndarray:
        """A query is cold when its item is new, or its user has neither training nor history."""
        parts = self.coldness(history, queries)
        return parts["item_cold"] | parts["user_cold"]

    def coldness(self, history: pl.DataFrame, queries: pl.DataFrame) -> dict[str, np.ndarray]:
        """Per query: `item_cold` (item unseen in training), `user_cold` (user with neither
        training events nor visible history) and `visible` (the user's visible history events).
        """
        self._check_fitted()
        visible = visible_counts(history, queries).astype(np.int64)
        return {
            "item_cold": self.items_.encode(queries[ITEM]) == COLD,
            "user_cold": (self.users_.encode(queries[USER]) == COLD) & (visible == 0),
            "visible": visible,
        }

    def get_state(self) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        """Fitted state as named tensors (for safetensors) and JSON-ready metadata."""
        self._check_fitted()
        tensors, meta = self._state()
        meta = meta | {"users": self.users_.to_list(), "items": self.items_.to_list()}
        return {k: v.detach().cpu().contiguous() for k, v in tensors.items()}, meta

    def set_state(self, tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> Self:
        """Restore what `get_state` returned; the model must be built with the same config."""
        self.users_ = Vocabulary(meta["users"])
        self.items_ = Vocabulary(meta["items"])
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
