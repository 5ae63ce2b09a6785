"""starcast: predict star ratings from the time-ordered history of reviews."""

import importlib

from starcast.config import StarcastConfig, load_config
from starcast.data.readers import ColumnMap, read_events, read_items
from starcast.data.schema import RatingScale
from starcast.data.splits import Split, split_events
from starcast.data.synth import SynthConfig, generate
from starcast.errors import ConfigError, DataError, ModelFormatError, NotFittedError, StarcastError

__version__ = "0.1.0"

__all__ = [
    "MODELS",
    "ColumnMap",
    "ConfigError",
    "DataError",
    "Forecaster",
    "ModelFormatError",
    "NotFittedError",
    "RatingScale",
    "Split",
    "StarcastConfig",
    "StarcastError",
    "SynthConfig",
    "generate",
    "load_config",
    "read_events",
    "read_items",
    "split_events",
]

# torch comes with the forecaster: the data commands (convert, inspect) load it only when asked
_LAZY = {"Forecaster": "starcast.forecaster", "MODELS": "starcast.forecaster"}


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'starcast' has no attribute {name!r}")
