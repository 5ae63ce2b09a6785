"""`Forecaster`: the public estimator that composes config, model, training and persistence.

    Forecaster(model="lstm").fit(train, valid).predict(history, queries)
    forecaster.save("model_dir"); Forecaster.load("model_dir")

A model directory holds `model.safetensors` (weights) and `model.json` (format version,
configuration, vocabularies, training log). Nothing is pickled.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any, Self

import polars as pl
from safetensors.torch import load_file, save_file

from starcast.config import StarcastConfig, from_dict, to_dict
from starcast.data.schema import RatingScale
from starcast.errors import ConfigError, ModelFormatError, NotFittedError
from starcast.jsonsafe import finite
from starcast.models.base import RatingModel
from starcast.models.bias import BiasModel
from starcast.models.lstm import LSTMModel
from starcast.models.mean import GlobalMean
from starcast.models.mf import MFModel
from starcast.models.seed import SeedModel
from starcast.models.stars import StarCosts
from starcast.models.transformer import TransformerModel
from starcast.training.trainer import Progress

# 2: the sequence network's encoder is a submodule (net.encoder.*); 3: its step input is
# the rating's residual from mu + item bias, not the centred rating
FORMAT_VERSION = 4
WEIGHTS, META = "model.safetensors", "model.json"

Builder = Callable[[StarcastConfig, RatingScale, Progress | None], RatingModel]
MODELS: dict[str, Builder] = {
    "mean": lambda c, s, p: GlobalMean(scale=s),
    "bias": lambda c, s, p: BiasModel(c.bias, scale=s),
    "mf": lambda c, s, p: MFModel(c.mf, c.train, scale=s),
    "seed": lambda c, s, p: SeedModel(c.seed_model, c.train, scale=s),
    "lstm": lambda c, s, p: LSTMModel(c.lstm, c.train, progress=p, scale=s),
    "transformer": lambda c, s, p: TransformerModel(c.transformer, c.train, progress=p, scale=s),
}


class Forecaster:
    """Predicts star ratings; `fit` returns self, fitted state lives in `model_`."""

    def __init__(
        self, model: str | None = None, config: StarcastConfig | None = None, *,
        seed: int | None = None, epochs: int | None = None, device: str | None = None,
        threads: int | None = None, precision: str | None = None,
        scale: RatingScale = RatingScale(), progress: Progress | None = None,
    ) -> None:
        config = config or StarcastConfig()
        overrides = {"seed": seed, "epochs": epochs, "device": device, "threads": threads,
                     "precision": precision}
        train = dataclasses.replace(
            config.train, **{k: v for k, v in overrides.items() if v is not None}
        )
        self.config = dataclasses.replace(config, model=model or config.model, train=train)
        if self.config.model not in MODELS:
            raise ConfigError(f"unknown model {self.config.model!r}; choose one of {list(MODELS)}")
        self.scale = scale
        self.progress = progress
        costs = self.config.stars.costs
        self.costs = None if costs is None else StarCosts.parse(costs, scale.stars,
                                                                "stars.costs")

    def fit(
        self,
        train: pl.DataFrame,
        valid: pl.DataFrame | None = None,
        items: pl.DataFrame | None = None,
    ) -> Self:
        """Fit on `train`, early-stopping on `valid`; `items`: side features (ITEM_SCHEMA)."""
        model = MODELS[self.config.model](self.config, self.scale, self.progress)
        self.model_ = model.fit(train, valid, items)
        if self.costs is not None:  # the user's costs, saved with the model
            self.model_.costs_ = self.costs
        return self

    def predict(
        self, history: pl.DataFrame | None, queries: pl.DataFrame, costs: Any = None
    ) -> pl.DataFrame:
        """One row per query, in order: user, item, ts, prediction (expected star), balanced
        (the star of least expected cost), cold, p1..p5.

        `costs`: per-star weights or a K x K matrix for the balanced reading of this call
        (default: the model's, inverse star shares of its training ratings).
        """
        reading = None if costs is None else StarCosts.parse(costs, self.scale.stars)
        return self._fitted().predict(history, queries, reading)

    def save(self, directory: str | Path) -> Path:
        tensors, meta = self._fitted().get_state()
        out = Path(directory)
        out.mkdir(parents=True, exist_ok=True)
        save_file(tensors, str(out / WEIGHTS))
        document = {
            "format_version": FORMAT_VERSION,
            "config": to_dict(self.config),
            "scale": [self.scale.low, self.scale.high],
            "state": meta,
            "training_log": self.training_log,
        }
        (out / META).write_text(json.dumps(finite(document)))
        return out

    @classmethod
    def load(cls, directory: str | Path) -> Forecaster:
        document = _read_meta(Path(directory))
        config = from_dict(StarcastConfig, document["config"], where=f"{directory}/{META}")
        forecaster = cls(config=config, scale=RatingScale(*document["scale"]))
        model = MODELS[config.model](config, forecaster.scale, None)
        weights = Path(directory) / WEIGHTS
        try:
            tensors = load_file(str(weights))
        except Exception as err:  # safetensors' own error type is not public API
            raise ModelFormatError(f"{weights}: cannot read the weights ({err}); the file is "
                                   "damaged or not from `starcast train`") from None
        try:
            forecaster.model_ = model.set_state(tensors, document["state"])
        except (KeyError, RuntimeError, ValueError, TypeError, IndexError) as err:
            raise ModelFormatError(f"{weights}: the weights do not fit {directory}/{META} "
                                   f"({type(err).__name__}: {str(err)[:300]})") from None
        forecaster.loaded_log_ = document.get("training_log", {"epochs": []})
        return forecaster

    @property
    def training_log(self) -> dict[str, Any]:
        """Per-epoch loss and valid RMSE, the chosen epoch, and the refit's epochs (if any)."""
        if hasattr(self, "loaded_log_"):
            return self.loaded_log_
        model = self._fitted()
        log = getattr(model, "log_", None)
        if log is not None:
            return {"epochs": log.epochs, "best_epoch": log.best_epoch,
                    "refit_epochs": log.refit_epochs, "blend": log.blend,
                    "fm_mix": log.fm_mix, "item_tables": log.item_tables,
                    "recurrent": log.recurrent}
        return {"epochs": getattr(model, "history_", []),
                "best_epoch": getattr(model, "best_epoch_", None), "refit_epochs": []}

    def _fitted(self) -> RatingModel:
        if not hasattr(self, "model_"):
            raise NotFittedError("Forecaster is not fitted: call fit() or Forecaster.load()")
        return self.model_


def model_version(directory: str | Path) -> str:
    """The model's name and a digest of its weights: what a state file is bound to."""
    config = json.loads((Path(directory) / META).read_text()).get("config", {})
    digest = hashlib.sha256((Path(directory) / WEIGHTS).read_bytes()).hexdigest()[:12]
    return f"{config.get('model', 'unknown')}-{digest}"


def _read_meta(directory: Path) -> dict[str, Any]:
    meta, weights = directory / META, directory / WEIGHTS
    if not meta.is_file() or not weights.is_file():
        raise ModelFormatError(f"{directory} is not a starcast model directory "
                               f"(needs {META} and {WEIGHTS})")
    try:
        document = json.loads(meta.read_text())
    except ValueError as err:
        raise ModelFormatError(f"{meta}: not valid JSON: {err}") from err
    version = document.get("format_version")
    if version != FORMAT_VERSION:
        raise ModelFormatError(
            f"{meta}: model format version {version!r}, this starcast reads {FORMAT_VERSION}; "
            "retrain the model or use the starcast version that wrote it"
        )
    return document
