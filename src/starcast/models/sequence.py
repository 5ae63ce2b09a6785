"""Sequence models: SequenceNet fitted over every customer's whole sequence.

Biases are warm-started from an ALS fit; the user's bias is folded in from the history visible
to each prediction, so users unseen in training still get their own bias. The subclasses
differ only in the sequence encoder (models.encoders): `lstm` (the default) and `transformer`.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable

import numpy as np
import polars as pl
import torch

from starcast.config import BiasConfig, SequenceConfig, TrainConfig
from starcast.data.schema import ITEM, RATING, TS, USER, RatingScale
from starcast.features.history import visible_counts
from starcast.features.item_windows import ItemWindows, item_windows
from starcast.features.prefixes import prefix_queries
from starcast.features.sequences import (
    FEATURES,
    ITEM_INDEX,
    RESIDUAL,
    SIDE_INDEX,
    query_sequences,
    target_features,
    training_sequences,
)
from starcast.features.side import SideFeatures
from starcast.features.vocab import Vocabulary
from starcast.models.base import Estimate, TrainedModel
from starcast.models.bias import fit_biases, predictive_shrinkage
from starcast.models.blend import FactorBlend, Pair, fitting
from starcast.models.sequence_net import SequenceNet
from starcast.training.distributed import Cluster
from starcast.training.runtime import autocast_dtype, prepare
from starcast.training.trainer import (
    Progress,
    TrainLog,
    Validation,
    predict_last,
    predict_prefixes,
    train_sequences,
)

SIDE_SHRINKAGE = 5.0  # items' worth of prior pulling a side token's bias toward 0


class SequenceModel(TrainedModel):
    """The shared model; a subclass names itself and builds its encoder (`_encoder`)."""

    config_type = SequenceConfig
    data_parallel = True

    def __init__(
        self,
        config: SequenceConfig | None = None,
        train: TrainConfig = TrainConfig(),
        progress: Progress | None = None,
        scale: RatingScale = RatingScale(),
    ) -> None:
        super().__init__(config, train, scale)
        self.progress = progress

    def _take_items(self, items: pl.DataFrame | None) -> None:
        """Side features of every item in `items`, new ones included."""
        self.side_ = SideFeatures.empty() if items is None else SideFeatures.build(items)

    def _fit(self, train: pl.DataFrame, valid: pl.DataFrame | None) -> None:
        has_valid = valid is not None and valid.height > 0
        # the FMs' rounds: on train (for the weights on valid), then on everything known if the
        # refit sees valid; none reads the network, so a second process fits them meanwhile
        rounds = [train] + ([pl.concat([train, valid])] if has_valid and self.config.refit else [])
        with fitting(rounds if self._factors() else [], self.config.fm, self._fm_seed(),
                     self.scale) as fms:
            self._fit_with(train, valid if has_valid else None, fms)

    def _fit_with(self, train: pl.DataFrame, valid: pl.DataFrame | None,
                  fms: Callable[[int], Pair]) -> None:
        """`_fit`, the FMs of its rounds fitted by `fms(round)` (-1: the last, the served one)."""
        device, _ = prepare(self.train_config)
        self.log_ = self._train(train, valid, self.epochs, device)
        blend = None
        if valid is not None and self._factors():
            blend = self._valid_blend(train, valid, FactorBlend.of(fms(0)))
        if valid is not None:  # before the refit sees valid: what calibrates the star probabilities
            self._valid_estimate = self._held_out(train, valid, blend)
        if valid is not None and self.config.refit:
            # the chosen number of epochs again, on everything known: valid is the most recent data
            self.users_ = Vocabulary.build(pl.concat([train[USER], valid[USER]]))
            refit_log = self._train(pl.concat([train, valid]), None, self.log_.best_epoch, device,
                                    self.log_.item_tables, self.log_.recurrent)
            self.log_.refit_epochs = refit_log.epochs
        self.net_.cpu().eval()  # fitted: predictions never use dropout
        if self._factors():
            fitted = (None, None) if blend is None else (blend.weights, blend.mix)
            self.blend_ = FactorBlend.of(fms(-1), *fitted)

    def _factors(self) -> bool:
        """Whether the FM stands beside the network (its probabilities would not follow)."""
        return self.config.factors and self.config.head == "regression"

    def _fm_seed(self) -> int:
        return 42 + self.train_config.seed

    def _valid_blend(self, train: pl.DataFrame, valid: pl.DataFrame,
                     blend: FactorBlend) -> FactorBlend:
        """The FMs fitted on train (`blend`), with their share and weights fitted on valid (the
        network fitted on train too), valid predicted from train + valid under the visibility
        rule."""
        history = pl.concat([train, valid])
        network = self._network_estimate(history, valid).mean
        truth = valid[RATING].to_numpy()
        blend.mix = blend.fitted_mix(valid, truth)
        blend.weights = blend.fitted_weights(network, valid, visible_counts(history, valid), truth)
        self.log_.blend = blend.weights.tolist()
        self.log_.fm_mix = None if blend.probit is None else blend.mix
        return blend

    def _held_out(self, train: pl.DataFrame, valid: pl.DataFrame,
                  blend: FactorBlend | None) -> Estimate:
        """Valid as the fitted model reads a test period: from train alone."""
        estimate = self._network_estimate(train, valid)
        if blend is not None:
            estimate.mean = blend.apply(estimate.mean, valid[USER], valid[ITEM],
                                        valid[TS].to_numpy(), visible_counts(train, valid))
        return estimate

    def _held_out_estimate(self, train: pl.DataFrame, valid: pl.DataFrame) -> Estimate:
        return self.__dict__.pop("_valid_estimate")

    def _train(
        self, train: pl.DataFrame, valid: pl.DataFrame | None, epochs: int, device: torch.device,
        tables: str | None = None, recurrent: bool | str | None = None,
    ) -> TrainLog:
        """Fit the network on `train` (early stopping on `valid` when given), its item tables
        `tables` and its reading of the state `recurrent` (defaults: the configured
        `item_tables` and `recurrent`). `auto` with valid tries both ways (fixed tables first,
        the state read first), every combination, and keeps the network of lower valid RMSE at
        its kept epoch; a tie (the untrained network is the same every way) keeps the first."""
        self.items_ = Vocabulary.build(train[ITEM], self.config.min_count)
        self.mu_, _, self.b_item_ = fit_biases(
            self.users_.encode(train[USER]),
            self.items_.encode(train[ITEM]),
            train[RATING].to_numpy(),
            len(self.users_),
            len(self.items_),
            BiasConfig(),
        )
        train_seqs = self._training_sequences(train)
        own = train_seqs.is_target  # (not the context a chunk repeats from its predecessor)
        self.user_shrinkage_ = self.config.user_shrinkage or predictive_shrinkage(
            (train_seqs.target - self.mu_ - self.b_item_[train_seqs.item])[own],
            train_seqs.feats[own, FEATURES.index("user_sum")],
            train_seqs.feats[own, FEATURES.index("user_n")],
        )
        self._split_item_bias(train)
        validation = None
        if valid is not None:
            predict = self._prepared(train, valid)
            validation = Validation(lambda net: predict(net)[0], valid[RATING].to_numpy())
        modes = _tries(tables or self.config.item_tables, ["fixed", "learned"], ["learned"],
                       validation is not None)
        states = _tries(self.config.recurrent if recurrent is None else recurrent,
                        [True, False], [True], validation is not None)
        kept = None
        for mode, reads_state in itertools.product(modes, states):
            prepare(self.train_config)  # each try, and the refit, from the same seed
            net = self._network(reads_state).to(device)
            log = train_sequences(
                net,
                train_seqs,
                validation,
                self.config,
                epochs,
                device,
                np.random.default_rng(self.train_config.seed),
                self._class_weights(train, device),
                self.progress,
                (self.scale.low, self.scale.high),
                cluster=Cluster.current(),
                autocast=autocast_dtype(self.train_config.precision, device),
                fixed_tables=mode == "fixed",
            )
            if kept is None or log.chosen_rmse < kept[1].chosen_rmse:
                kept = net, log
        self.net_, log = kept
        return log

    def _split_item_bias(self, train: pl.DataFrame) -> None:
        """Part of each item's ALS bias moves to its side tokens: the part new items share."""
        known = self.items_.ids
        rows = self.side_.rows(pl.Series(known, dtype=pl.Utf8))
        self.token_bias_ = self.side_.token_means(rows, self.b_item_[1:], SIDE_SHRINKAGE)
        self.item_bias_ = self.b_item_.copy()  # what the item's own row keeps
        self.item_bias_[1:] -= self.side_.bag_means(self.token_bias_)[rows]

    def _estimate(self, history: pl.DataFrame, queries: pl.DataFrame) -> Estimate:
        estimate = self._network_estimate(history, queries)
        if hasattr(self, "blend_"):
            visible = visible_counts(history, queries)
            estimate.mean = self.blend_.apply(estimate.mean, queries[USER], queries[ITEM],
                                              queries[TS].to_numpy(), visible)
        return estimate

    def _network_estimate(self, history: pl.DataFrame, queries: pl.DataFrame) -> Estimate:
        return Estimate(*self._prepared(history, queries)(self.net_))

    def _prepared(self, history: pl.DataFrame, queries: pl.DataFrame) -> Callable:
        """Everything about the queries but the network, computed once: net -> (mean, probs).

        Most queries read the state along their user's history (one encoder pass per user);
        those whose own event hides inside it, or with item windows, get their own sequence.
        """
        if self.config.item_window > 0:  # per-query item windows: every query its own sequence
            seqs = self._query_sequences(history, queries)
            return lambda net: predict_last(net, seqs, _device_of(net))
        history, queries = self._with_index(history), self._with_index(queries)
        prefixes = prefix_queries(history, queries)
        feats = self._features(history, queries)
        own = np.flatnonzero(prefixes.own_visible)
        rest = queries[own]
        own_seqs = None
        if len(own):
            own_seqs = query_sequences(history, rest, self._features(history, rest))

        def predict(net: torch.nn.Module) -> tuple[np.ndarray, np.ndarray | None]:
            device = _device_of(net)  # the CPU after fitting; the training device during it
            mean, probs = predict_prefixes(net, prefixes, feats, device)
            if own_seqs is not None:
                mean[own], own_probs = predict_last(net, own_seqs, device)
                if probs is not None:
                    probs[own] = own_probs
            return mean, probs

        return predict

    def _state(self) -> tuple[dict[str, torch.Tensor], dict]:
        tensors = {f"net.{k}": v for k, v in self.net_.state_dict().items()}
        tensors["b_item"] = torch.from_numpy(self.b_item_)
        log = {
            "epochs": self.log_.epochs,
            "best_epoch": self.log_.best_epoch,
            "refit_epochs": self.log_.refit_epochs,
            "blend": self.log_.blend,
            "fm_mix": self.log_.fm_mix,
            "item_tables": self.log_.item_tables,
            "recurrent": self.log_.recurrent,
        }
        extra = {}
        if hasattr(self, "blend_"):
            fm_tensors, extra["factors"] = self.blend_.state()
            tensors |= fm_tensors
        return tensors, extra | {
            "side_items": self.side_.items.to_list(),
            "mu": self.mu_,
            "user_shrinkage": self.user_shrinkage_,
            "training_log": log,
        }

    def _restore(self, tensors: dict[str, torch.Tensor], meta: dict) -> None:
        self.mu_ = float(meta["mu"])
        self.b_item_ = tensors["b_item"].numpy()
        self.user_shrinkage_ = float(meta["user_shrinkage"])
        tokens = tensors["net.side_tokens"].numpy()
        self.side_ = SideFeatures(Vocabulary(meta["side_items"]), tokens, int(tokens.max()) + 1)
        # initial values only: the loaded weights replace them
        self.item_bias_, self.token_bias_ = self.b_item_, np.zeros(self.side_.n_tokens)
        log = meta["training_log"]
        # (models saved before the choice was logged read their configured setting)
        self.net_ = self._network(log.get("recurrent", self.config.recurrent is not False))
        self.net_.load_state_dict({k[4:]: v for k, v in tensors.items() if k.startswith("net.")})
        self.net_.eval()
        self.log_ = TrainLog(log["epochs"], log["best_epoch"], refit_epochs=log["refit_epochs"],
                             blend=log.get("blend"), fm_mix=log.get("fm_mix"),
                             item_tables=log["item_tables"], recurrent=self.net_.recurrent)
        if "factors" in meta:
            self.blend_ = FactorBlend.restore(tensors, meta["factors"])

    def _encoder(self, inputs: int) -> torch.nn.Module:
        raise NotImplementedError

    def _context(self) -> int:
        """Events of left context each training chunk brings (0: chunks carry states)."""
        return 0

    def _network(self, recurrent: bool = True) -> SequenceNet:
        return SequenceNet(
            self.config,
            self._encoder,
            len(self.items_),
            len(FEATURES),
            self.mu_,
            self.item_bias_,
            self.user_shrinkage_,
            self.side_.tokens,
            self.token_bias_,
            stars=self.scale.stars,
            recurrent=recurrent,
        )

    def _with_index(self, events: pl.DataFrame) -> pl.DataFrame:
        index = self.items_.encode(events[ITEM])
        out = events.with_columns(
            pl.Series(ITEM_INDEX, index), pl.Series(SIDE_INDEX, self.side_.rows(events[ITEM]))
        )
        if RATING in events.columns:
            out = out.with_columns(
                (pl.col(RATING) - self.mu_ - pl.Series(self.b_item_[index])).alias(RESIDUAL)
            )
        return out

    def _features(self, history: pl.DataFrame, queries: pl.DataFrame) -> np.ndarray:
        return target_features(history, queries)

    def _training_sequences(self, train: pl.DataFrame):
        events = self._with_index(train).sort([USER, TS, ITEM])
        return training_sequences(
            events, self._features(events, events), self.config.max_len,
            self._windows(events, events), context=self._context(),
        )

    def _query_sequences(self, history: pl.DataFrame, queries: pl.DataFrame):
        history = self._with_index(history)
        queries = self._with_index(queries)
        feats = self._features(history, queries)
        return query_sequences(history, queries, feats, self._windows(history, queries))

    def _windows(self, history: pl.DataFrame, targets: pl.DataFrame) -> ItemWindows | None:
        width = self.config.item_window
        return item_windows(history, targets, width) if width > 0 else None

    def _class_weights(self, train: pl.DataFrame, device: torch.device) -> torch.Tensor | None:
        if not self.config.class_weight:
            return None
        stars = np.rint(train[RATING].to_numpy() - self.scale.low).astype(int)
        share = np.bincount(stars, minlength=self.scale.stars) / len(stars)
        weights = (np.maximum(share, 1e-3) / share.max()) ** -self.config.class_weight
        return torch.tensor(weights, dtype=torch.float32, device=device)


def _tries(setting: bool | str, both: list, alone: list, has_valid: bool) -> list:
    """The ways to train for a setting: `auto` tries `both` where valid can choose, else
    `alone`; any other value is the one way."""
    if setting != "auto":
        return [setting]
    return both if has_valid else alone


def _device_of(net: torch.nn.Module) -> torch.device:
    return next(net.parameters()).device

