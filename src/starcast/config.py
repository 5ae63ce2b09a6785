"""Every setting starcast has, as typed dataclasses with their defaults in one place.

`load_config` reads a JSON or TOML file and rejects unknown keys and wrong types by name.
"""

from __future__ import annotations

import dataclasses
import json
import math
import numbers
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, get_type_hints

from starcast.errors import ConfigError

DEVICES = ("auto", "cpu", "cuda")
PRECISIONS = ("auto", "fp32", "bf16")
HEADS = ("regression", "ordinal")
ITEM_TABLES = ("auto", "learned", "fixed")


def _at_least(config: Any, prefix: str, low: float, *names: str) -> None:
    for name in names:
        value = getattr(config, name)
        if value is not None and value < low:
            raise ConfigError(f"{prefix}.{name} must be at least {low:g}, got {value!r}")


def _positive(config: Any, prefix: str, *names: str) -> None:
    for name in names:
        if not getattr(config, name) > 0:
            raise ConfigError(f"{prefix}.{name} must be positive, got {getattr(config, name)!r}")


def _share(config: Any, prefix: str, *names: str) -> None:
    for name in names:
        if not 0 <= getattr(config, name) < 1:
            raise ConfigError(f"{prefix}.{name} must be in [0, 1), got {getattr(config, name)!r}")


def _one_of(config: Any, prefix: str, name: str, allowed: tuple[str, ...]) -> None:
    if getattr(config, name) not in allowed:
        raise ConfigError(f"{prefix}.{name} must be one of {', '.join(allowed)}, "
                          f"got {getattr(config, name)!r}")


@dataclass(frozen=True)
class TrainConfig:
    """How any trainable model is trained (not what it is)."""

    seed: int = 0
    epochs: int | None = None  # None: the model's own default
    device: str = "auto"  # auto | cpu | cuda
    threads: int = 1  # torch threads per process; more is often slower on a shared machine
    precision: str = "auto"  # auto | fp32 | bf16: autocast while training (auto: bf16 on CUDA)

    def __post_init__(self) -> None:
        _one_of(self, "train", "device", DEVICES)
        _one_of(self, "train", "precision", PRECISIONS)
        _at_least(self, "train", 0, "epochs")
        _at_least(self, "train", 1, "threads")

    def epochs_or(self, model_default: int) -> int:
        """The run's epoch override when set, else the model's own epoch count."""
        return model_default if self.epochs is None else self.epochs


@dataclass(frozen=True)
class BiasConfig:
    reg_user: float = 15.0
    reg_item: float = 10.0
    iterations: int = 10
    fold_in: bool = True

    def __post_init__(self) -> None:
        _at_least(self, "bias", 0, "reg_user", "reg_item")
        _at_least(self, "bias", 1, "iterations")


@dataclass(frozen=True)
class MFConfig:
    """Biased matrix factorisation trained by minibatch SGD-style optimisation (Adam)."""

    factors: int = 32
    epochs: int = 30
    lr: float = 0.01
    reg: float = 0.05
    batch_size: int = 1024
    patience: int = 3
    fold_in: bool = True  # user bias re-estimated from the history given at predict time
    fold_in_reg: float = 5.0  # pseudo-events shrinking that estimate toward the trained bias

    def __post_init__(self) -> None:
        _at_least(self, "mf", 1, "factors", "batch_size", "patience")
        _at_least(self, "mf", 0, "epochs", "reg", "fold_in_reg")
        _positive(self, "mf", "lr")


@dataclass(frozen=True)
class SeedConfig:
    """The reference model of the original design (Keras): 2 x LSTM(50) over the last 10 ratings."""

    window: int = 10
    hidden: int = 50
    layers: int = 2
    lr: float = 1e-3
    batch_size: int = 32
    epochs: int = 100
    patience: int = 20

    def __post_init__(self) -> None:
        _at_least(self, "seed_model", 1, "window", "hidden", "layers", "batch_size", "patience")
        _at_least(self, "seed_model", 0, "epochs")
        _positive(self, "seed_model", "lr")


@dataclass(frozen=True)
class FMConfig:
    """The Bayesian factorization machine under the lstm (starcast.models.bayesian_fm)."""

    rank: int = 32
    # independent Gibbs chains, averaged: one chain stays near one mode of the posterior (its
    # seed alone moves test RMSE by 0.004 to 0.03), so six short chains predict better than
    # one long one at the same cost (benchmarks/fm_chains.py)
    chains: int = 6
    iterations: int = 50  # per chain
    burn_in: int = 25  # draws before a chain is read; every later draw is averaged
    # an ordered-probit FM beside the regression one, the two mixed by a share fitted on valid
    # (two likelihoods of the same features: the probit's fits skewed star counts, the
    # regression's drifts less over time; benchmarks/fm_mix.py)
    probit: bool = True
    probit_iterations: int = 300  # one chain (its cutpoints settle slowly)
    probit_burn_in: int = 50
    cross_rank: int = 64  # columns kept of the mean user x item interaction (truncated SVD)
    memory_mb: int = 512  # for the draws' user and item vectors; more draws are thinned

    def __post_init__(self) -> None:
        for name in ("rank", "chains", "iterations", "probit_iterations", "cross_rank",
                     "memory_mb"):
            if getattr(self, name) < 1:
                raise ConfigError(f"fm.{name} must be at least 1, got {getattr(self, name)}")
        if not 0 <= self.burn_in < self.iterations:
            raise ConfigError(f"fm.burn_in must be in [0, iterations = {self.iterations}), "
                              f"got {self.burn_in}")
        if not 0 <= self.probit_burn_in < self.probit_iterations:
            raise ConfigError("fm.probit_burn_in must be in [0, probit_iterations = "
                              f"{self.probit_iterations}), got {self.probit_burn_in}")


@dataclass(frozen=True)
class SequenceConfig:
    """What every sequence model shares (starcast.models.sequence): the network around the
    sequence encoder, its head, the factorization machine beside it, and its training."""

    section: ClassVar[str] = "lstm"  # the configuration table, named in error messages

    hidden: int = 32
    item_dim: int = 32
    mlp: int = 64
    head: str = "regression"  # regression | ordinal
    class_weight: float = 0.0  # exponent: weight of a true class = (share / max share) ** -this
    dropout: float = 0.3
    item_dropout: float = 0.05  # share of item ids replaced by the cold bucket while training
    min_count: int = 1  # items seen fewer times in training share the cold bucket
    # training cuts longer customers into chunks of this many target events; an lstm chunk
    # starts from the state its predecessor ended in (truncated back-propagation), a
    # transformer chunk re-reads its `context` predecessors; prediction reads everything
    max_len: int = 200
    # item-side recurrent state: a GRU over the item's latest `item_window` ratings before each
    # event (0: off) with `item_hidden` units
    item_window: int = 0
    item_hidden: int = 16
    # whether the head reads the customer's sequence state: True; False (zeros instead: the
    # ablation that measures what the recurrent or attention part adds, benchmarks/accuracy.py);
    # `auto` with valid trains both ways and keeps the one of lower valid RMSE at its kept
    # epoch (where the order of a customer's ratings says nothing, the state is noise the
    # head learns to fit, and the network without it keeps more of what it learned)
    recurrent: bool | str = "auto"
    # a Bayesian factorization machine beside the network (regression head only): the
    # prediction moves from the network's toward the FM's by a weight fitted on valid
    factors: bool = True
    fm: FMConfig = FMConfig()
    user_shrinkage: float | None = None  # initial fold-in shrinkage; None: best predictive
    reg_item: float = 10.0  # initial shrinkage of the item's drift from its trained bias (learned)
    l2_item: float = 1e-4  # per touched item row, not per event
    # the item and side-token embeddings and biases: `learned` with the network, or `fixed` at
    # their initial values (the ALS biases, random embeddings), so only the shared weights
    # learn; `auto` trains both ways and keeps the one valid prefers (on little data learned
    # tables fit each item's noise, and the shared weights then learn nothing that carries)
    item_tables: str = "auto"
    lr: float = 3e-3
    lr_embedding: float = 1e-2
    weight_decay: float = 1e-4
    # sequences per step; None: as many as give an epoch MIN_STEPS steps, from 8 to 64 (an
    # epoch of a few steps is too little learning for early stopping to judge)
    batch_size: int | None = None
    epochs: int = 30
    patience: int = 4
    # standard errors (paired, over valid events) by which a trained epoch must beat the
    # untrained bias-and-fold-in model to be kept; 0 keeps whichever valid RMSE is lower
    significance: float = 3.0
    refit: bool = True  # after early stopping, train again on train + valid for the best epochs

    def __post_init__(self) -> None:
        at = self.section
        _one_of(self, at, "head", HEADS)
        _one_of(self, at, "item_tables", ITEM_TABLES)
        if not (isinstance(self.recurrent, bool) or self.recurrent == "auto"):
            raise ConfigError(f"{at}.recurrent must be true, false or auto, "
                              f"got {self.recurrent!r}")
        _share(self, at, "dropout", "item_dropout")
        _at_least(self, at, 1, "hidden", "item_dim", "mlp", "min_count", "max_len",
                  "item_hidden", "batch_size", "patience")
        _at_least(self, at, 0, "class_weight", "item_window", "l2_item", "weight_decay",
                  "epochs", "significance")
        _positive(self, at, "lr", "lr_embedding", "reg_item")
        if self.user_shrinkage is not None:
            _positive(self, at, "user_shrinkage")


@dataclass(frozen=True)
class LSTMConfig(SequenceConfig):
    """The default forecaster: one LSTM pass per customer over the whole sequence; `hidden`
    is the LSTM's state size."""


@dataclass(frozen=True)
class TransformerConfig(SequenceConfig):
    """Causal self-attention over each customer's latest `context` events (SASRec-like);
    `hidden` is the attention width. Older history reaches the head only through the
    fold-in sums, so cost per event stays bounded however long the customer."""

    section: ClassVar[str] = "transformer"
    layers: int = 2
    heads: int = 2
    # events the state before a prediction reads (the latest N): the layers' attention spans
    # add up to it, so the served state is exactly a function of these N events
    context: int = 50

    def __post_init__(self) -> None:
        super().__post_init__()
        _at_least(self, self.section, 1, "layers", "heads", "context")
        if self.hidden % self.heads:
            raise ConfigError(f"transformer.hidden ({self.hidden}) must be a multiple of "
                              f"transformer.heads ({self.heads})")


@dataclass(frozen=True)
class StarsConfig:
    """How star probabilities are read (starcast.models.stars)."""

    # the balanced reading's costs: per-star weights (|k - j| * weight of true star j) or a
    # K x K matrix (cost of reading k when the truth is j); None: inverse training shares
    costs: tuple | None = None

    def __post_init__(self) -> None:
        if self.costs is not None:  # the star count is checked where the scale is known
            cost_rows(self.costs, "stars.costs")


def cost_rows(value: Any, where: str) -> list[list[float]]:
    """Costs as given by a user, checked for form alone: one row of per-star weights or a
    square matrix, of finite, non-negative numbers (the matrix's rows; the weights as one)."""
    form = f"{where}: expected per-star weights or a square matrix of numbers, got {value!r}"
    if isinstance(value, str) or not hasattr(value, "__len__") or len(value) == 0:
        raise ConfigError(form)
    nested = [hasattr(row, "__len__") and not isinstance(row, str) for row in value]
    if any(nested) and not all(nested):
        raise ConfigError(form)
    rows = [list(row) for row in value] if all(nested) else [list(value)]
    if all(nested) and any(len(row) != len(rows) for row in rows):
        raise ConfigError(f"{where}: a cost matrix must be square, got rows of "
                          f"{[len(row) for row in rows]} numbers")
    values = [x for row in rows for x in row]
    if not all(isinstance(x, numbers.Real) and not isinstance(x, bool) for x in values):
        raise ConfigError(form)
    if not all(math.isfinite(x) and x >= 0 for x in values):
        raise ConfigError(f"{where}: costs must be finite and non-negative, got {value!r}")
    return [[float(x) for x in row] for row in rows]


@dataclass(frozen=True)
class StarcastConfig:
    """A whole run: which model, its settings, and how to train it."""

    model: str = "lstm"
    train: TrainConfig = field(default_factory=TrainConfig)
    bias: BiasConfig = field(default_factory=BiasConfig)
    mf: MFConfig = field(default_factory=MFConfig)
    seed_model: SeedConfig = field(default_factory=SeedConfig)
    lstm: LSTMConfig = field(default_factory=LSTMConfig)
    transformer: TransformerConfig = field(default_factory=TransformerConfig)
    stars: StarsConfig = field(default_factory=StarsConfig)


def from_dict(cls: type, data: dict[str, Any], where: str = "config") -> Any:
    """Build dataclass `cls` from `data`, naming any unknown key or mistyped value."""
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: expected a table of settings, got {type(data).__name__}")
    hints = get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {unknown}; known: {sorted(names)}")
    values = {k: _coerce(hints[k], v, f"{where}.{k}") for k, v in data.items()}
    try:
        return cls(**values)
    except ConfigError as err:  # a value check of the dataclass's own: say where it was read
        raise ConfigError(f"{where}: {err}") from err


def _coerce(hint: Any, value: Any, where: str) -> Any:
    if dataclasses.is_dataclass(hint):
        return from_dict(hint, value, where)
    allowed = getattr(hint, "__args__", (hint,))
    if value is None and type(None) in allowed:
        return None
    if float in allowed and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if tuple in (getattr(a, "__origin__", a) for a in allowed) and isinstance(value, list):
        return tuple(value)
    plain = tuple(getattr(a, "__origin__", a) for a in allowed if a is not type(None))
    if isinstance(value, bool) and bool not in plain:
        raise ConfigError(f"{where}: expected {hint}, got a boolean")
    if not isinstance(value, plain):
        raise ConfigError(f"{where}: expected {hint}, got {type(value).__name__} {value!r}")
    return value


def to_dict(config: Any) -> dict[str, Any]:
    return dataclasses.asdict(config)


def load_config(path: str | Path) -> StarcastConfig:
    """Read a JSON or TOML run configuration."""
    path = Path(path)
    try:
        text = path.read_text()
        data = tomllib.loads(text) if path.suffix == ".toml" else json.loads(text)
    except (OSError, ValueError) as err:
        raise ConfigError(f"{path}: cannot read configuration: {err}") from err
    return from_dict(StarcastConfig, data, where=str(path))
