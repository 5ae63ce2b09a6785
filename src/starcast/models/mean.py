"""The global mean: the floor every other model must beat."""

from __future__ import annotations

import numpy as np
import polars as pl
import torch

from starcast.data.schema import RATING
from starcast.models.base import Estimate, RatingModel


class GlobalMean(RatingModel):
    name = "mean"

    def _fit(self, train: pl.DataFrame, valid: pl.DataFrame | None) -> None:
        self.mean_ = float(train[RATING].mean())

    def _estimate(self, history: pl.DataFrame, queries: pl.DataFrame) -> Estimate:
        return Estimate(np.full(queries.height, self.mean_))

    def _state(self) -> tuple[dict[str, torch.Tensor], dict]:
        return {}, {"mean": self.mean_}

    def _restore(self, tensors: dict[str, torch.Tensor], meta: dict) -> None:
        self.mean_ = float(meta["mean"])
