"""The main job on built-in synthetic data: generate, split in time, fit, compare models."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import polars as pl

from starcast.data.schema import RATING
from starcast.data.splits import split_events
from starcast.data.synth import SynthConfig, generate
from starcast.evaluation.metrics import summary
from starcast.forecaster import Forecaster


@dataclass(frozen=True)
class DemoConfig:
    users: int = 3_000
    items: int = 800
    events: int = 60_000
    seed: int = 0
    protocol: str = "time"


DEMO_MODELS = ("mean", "bias", "lstm")


def run_demo(
    config: DemoConfig = DemoConfig(), step: Callable[[str], None] = lambda _: None
) -> list[dict]:
    """One row per model: test RMSE, MAE, macro-MAE and fit seconds on a `time` split."""
    step(f"generating {config.events:,} synthetic events")
    data = generate(SynthConfig(config.users, config.items, config.events, seed=config.seed))
    step(f"splitting ({config.protocol})")
    split = split_events(data.events, config.protocol)
    history = pl.concat([split.train, split.valid])
    rows = []
    for name in DEMO_MODELS:
        step(f"fitting {name}")
        start = time.perf_counter()
        model = Forecaster(name, seed=config.seed).fit(split.train, split.valid)
        seconds = time.perf_counter() - start
        pred = model.predict(history, split.test)["prediction"].to_numpy()
        rows.append({"model": name, **summary(split.test[RATING].to_numpy(), pred),
                     "fit_seconds": seconds})
    return rows
