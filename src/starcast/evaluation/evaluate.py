"""Evaluate a fitted forecaster on queries with known ratings: metrics, slices, predictions."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np
import polars as pl

from starcast.data.schema import ITEM, RATING, USER
from starcast.errors import DataError
from starcast.evaluation.metrics import full_metrics, macro_mae, summary
from starcast.evaluation.slices import cold_start_labels, history_labels, slice_metrics
from starcast.forecaster import Forecaster


@dataclass
class Evaluation:
    """`metrics`: JSON-ready numbers; `predictions`: one row per query with truth and slices."""

    metrics: dict[str, Any]
    predictions: pl.DataFrame
    training_log: dict[str, Any]


def evaluate(
    forecaster: Forecaster, history: pl.DataFrame | None, queries: pl.DataFrame, seed: int = 0,
    costs: Any = None, about: dict[str, Any] | None = None,
) -> Evaluation:
    """Predict `queries` (which carry `rating`) from `history` and measure every way: both
    readings (`prediction`, the expected star; `balanced`, under `costs` or the model's), and
    beside them the bias baseline fitted on the history (less the queries' own events).
    `about`: what was evaluated (data file, model directory), kept with the metrics."""
    if RATING not in queries.columns:
        raise DataError("queries to evaluate need their true ratings", field=RATING)
    predictions = forecaster.predict(history, queries, costs)
    model = forecaster.model_
    parts = model.coldness(history if history is not None else queries.clear(), queries)
    truth = queries[RATING].to_numpy().astype(float)
    frame = predictions.with_columns(
        pl.Series("truth", truth),
        pl.Series("cold_start", cold_start_labels(parts["user_cold"], parts["item_cold"]),
                  dtype=pl.Utf8),
        pl.Series("visible_history", parts["visible"]),
        pl.Series("history", history_labels(parts["visible"]), dtype=pl.Utf8),
        pl.Series("true_rating", np.rint(truth).astype(int).astype(str), dtype=pl.Utf8),
    )
    scale = forecaster.scale
    stars = np.arange(int(round(scale.low)), int(round(scale.high)) + 1)
    probs = _probabilities(predictions)
    overall = full_metrics(truth, frame["prediction"].to_numpy(), stars, probs, seed,
                           model.shares_)
    if "balanced" in frame.columns:
        overall["balanced"] = full_metrics(truth, frame["balanced"].to_numpy(), stars,
                                           seed=seed)
    metrics = {
        "model": forecaster.config.model,
        "about": _about(about),
        "overall": overall,
        "baseline": _baseline(history, queries, truth, forecaster),
        "slices": slice_metrics(frame),
    }
    return Evaluation(metrics, frame, forecaster.training_log)


def _about(about: dict[str, Any] | None) -> dict[str, Any]:
    from starcast import __version__

    return (about or {}) | {"starcast": __version__,
                            "evaluated_at": datetime.now(UTC).isoformat(timespec="seconds")}


def _baseline(history: pl.DataFrame | None, queries: pl.DataFrame, truth: np.ndarray,
              forecaster: Forecaster) -> dict[str, Any] | None:
    """The bias model's scores on the same queries: fitted on the history without the
    queries' own (user, item) events (nothing of their ratings), predicting from the history."""
    if history is None or history.is_empty():
        return None
    known = history.join(queries.select(USER, ITEM), on=[USER, ITEM], how="anti")
    if known.is_empty():
        return None
    bias = Forecaster("bias", scale=forecaster.scale).fit(known)
    predicted = bias.predict(known, queries)
    out = {"model": "bias (fitted on the history)"} | summary(truth, predicted["prediction"])
    if "balanced" in predicted.columns:
        out["balanced_macro_mae"] = macro_mae(truth, predicted["balanced"].to_numpy())
    return out


def _probabilities(predictions: pl.DataFrame) -> np.ndarray | None:
    columns = [c for c in predictions.columns if c.startswith("p") and c[1:].isdigit()]
    return predictions.select(columns).to_numpy() if columns else None
