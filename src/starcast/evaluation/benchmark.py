"""Several models on one split, side by side: the same test rows, the same history."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import polars as pl

from starcast.config import StarcastConfig
from starcast.data.schema import RATING, RatingScale
from starcast.data.splits import Split
from starcast.errors import ConfigError
from starcast.evaluation import peers, plots
from starcast.evaluation.metrics import macro_mae, summary
from starcast.forecaster import Forecaster
from starcast.jsonsafe import finite
from starcast.models.stars import StarCosts, star_shares

COLUMNS = ("model", "rmse", "mae", "macro_mae", "balanced_macro_mae", "fit_seconds",
           "train_events_per_second", "predictions_per_second")


def run_benchmark(
    split: Split,
    models: list[str],
    history: pl.DataFrame,
    seed: int = 0,
    with_peers: bool | None = None,
    config: StarcastConfig | None = None,
    scale: RatingScale = RatingScale(),
) -> list[dict[str, Any]]:
    """Fit each model on train (valid for early stopping), predict test from `history`.

    The peers (Surprise's SVD and SVD++, the Bayesian FM in regression and ordered probit) join
    when their libraries are installed (`with_peers=None`; the `peers` extra), or when asked
    (`True`, which fails without them). They fit on train + valid and never see the test period.
    """
    truth = split.test[RATING].to_numpy()
    rows = []
    for name in models:
        start = time.perf_counter()
        forecaster = Forecaster(name, config, seed=seed, scale=scale).fit(split.train, split.valid)
        fitted = time.perf_counter() - start
        start = time.perf_counter()
        pred = forecaster.predict(history, split.test)
        balanced = pred["balanced"].to_numpy() if "balanced" in pred.columns else None
        rows.append(_row(name, truth, pred["prediction"].to_numpy(), balanced, fitted,
                         time.perf_counter() - start)
                    | {"train_events_per_second": _training_speed(forecaster)})
    names = peers.installed() if with_peers is None else list(peers.PEERS) if with_peers else []
    missing = sorted({peers.LIBRARY[n] for n in names if not peers.available(n)})
    if missing:
        raise ConfigError(f"peers need {', '.join(missing)}: pip install 'starcast[peers]'")
    if names:
        known = pl.concat([split.train, split.valid])
        # the peers' probabilities read the balanced way, with costs from what they fit on
        costs = StarCosts.inverse_share(star_shares(known[RATING].to_numpy(), scale.low,
                                                    scale.stars))
        for name in names:
            out = peers.fit_predict(name, known, split.test, scale, seed)
            balanced = (None if out.probabilities is None
                        else costs.balanced(out.probabilities, scale.low))
            rows.append(_row(name, truth, out.mean, balanced, out.fit_seconds,
                             out.predict_seconds))
    return rows


def _training_speed(forecaster: Forecaster) -> float | None:
    """Training events per second of the model's training loop (None: it has none)."""
    model = forecaster.model_
    speed = model.log_.events_per_second if hasattr(model, "log_") else getattr(
        model, "events_per_second_", None)
    return speed or None


def _row(name: str, truth: np.ndarray, pred: np.ndarray, balanced: np.ndarray | None,
         fit: float, predict: float) -> dict:
    metrics = summary(truth, pred)
    return {"model": name, "rmse": metrics["rmse"], "mae": metrics["mae"],
            "macro_mae": metrics["macro_mae"],
            "balanced_macro_mae": None if balanced is None else macro_mae(truth, balanced),
            "fit_seconds": fit, "train_events_per_second": None,
            "predictions_per_second": len(truth) / max(predict, 1e-9)}


def markdown(rows: list[dict[str, Any]]) -> str:
    head = "| " + " | ".join(COLUMNS) + " |\n|---|" + "---:|" * (len(COLUMNS) - 1) + "\n"
    body = "".join(
        "| " + " | ".join(_cell(r[c]) for c in COLUMNS) + " |\n" for r in rows
    )
    return head + body


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    return f"{value:.4f}" if isinstance(value, float) else str(value)


def write_benchmark(rows: list[dict[str, Any]], directory: str | Path, about: dict) -> dict:
    """benchmark.json (rows and what they were measured on), benchmark.md, comparison.png."""
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"json": out / "benchmark.json", "markdown": out / "benchmark.md",
             "plot": out / "comparison.png"}
    paths["json"].write_text(json.dumps(finite({"about": about, "rows": rows}), indent=2))
    paths["markdown"].write_text(markdown(rows))
    figure = plots.model_comparison(rows)
    figure.savefig(paths["plot"], dpi=100)
    plt.close(figure)
    return paths
