"""Biased matrix factorisation: r ~ mu + b_u + b_i + p_u . q_i.

Trained by minibatch Adam on (user, item, rating) with sparse embedding tables (SparseAdam: a
step touches only the rows in its batch, never the whole catalogue). The L2 penalty is on the
rows a batch touches, each distinct row counted once per batch. Biases start from the ALS fit of
`fit_biases`, factors from small random values; early stopping on valid RMSE restores the best
epoch. Rows that no training event touched (the cold bucket, index 0, with the vocabulary's
min_count of 1) have zero factors and zero bias, so a new user or item gets mu (+ the other
side's bias).

At predict time the user's bias is folded in from the history as in BiasModel: a shrunk mean of
the user's visible residuals r - mu - b_i - p_u . q_i (the factor term is 0 for a user unknown
to training). The factor term of a query uses the user's trained factors, 0 for a new user.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import polars as pl
import torch
from torch import nn

from starcast.config import BiasConfig, MFConfig
from starcast.data.schema import ITEM, RATING, USER
from starcast.features.history import visible_sums
from starcast.models.base import Estimate, TrainedModel
from starcast.models.bias import fit_biases
from starcast.training.epochs import EpochLog
from starcast.training.runtime import prepare

_INIT_STD = 0.01


class _MFNet(nn.Module):
    def __init__(self, n_users: int, n_items: int, factors: int, mu: float,
                 b_user: np.ndarray, b_item: np.ndarray) -> None:
        super().__init__()
        self.p = nn.Embedding(n_users, factors, sparse=True)
        self.q = nn.Embedding(n_items, factors, sparse=True)
        self.bu = nn.Embedding(n_users, 1, sparse=True)
        self.bi = nn.Embedding(n_items, 1, sparse=True)
        nn.init.normal_(self.p.weight, std=_INIT_STD)
        nn.init.normal_(self.q.weight, std=_INIT_STD)
        with torch.no_grad():
            self.bu.weight.copy_(torch.as_tensor(b_user, dtype=torch.float32)[:, None])
            self.bi.weight.copy_(torch.as_tensor(b_item, dtype=torch.float32)[:, None])
        self.register_buffer("mu", torch.tensor(float(mu)))

    def forward(self, u: torch.Tensor, i: torch.Tensor) -> torch.Tensor:
        dot = (self.p(u) * self.q(i)).sum(-1)
        return self.mu + self.bu(u).squeeze(-1) + self.bi(i).squeeze(-1) + dot

    def penalty(self, u: torch.Tensor, i: torch.Tensor) -> torch.Tensor:
        """Squared norm of the distinct rows the batch touches (factors and biases)."""
        u, i = torch.unique(u), torch.unique(i)
        return (self.p(u).square().sum() + self.q(i).square().sum()
                + self.bu(u).square().sum() + self.bi(i).square().sum())

    def zero_rows(self, users: torch.Tensor, items: torch.Tensor) -> None:
        with torch.no_grad():
            self.p.weight[users] = 0.0
            self.bu.weight[users] = 0.0
            self.q.weight[items] = 0.0
            self.bi.weight[items] = 0.0


class MFModel(TrainedModel):
    name = "mf"
    config_type = MFConfig

    def _fit(self, train: pl.DataFrame, valid: pl.DataFrame | None) -> None:
        started = time.perf_counter()
        cfg = self.config
        self.device_, generator = prepare(self.train_config)
        dev = self.device_
        users, items = self.users_.encode(train[USER]), self.items_.encode(train[ITEM])
        ratings = train[RATING].to_numpy().astype(np.float64)
        n_users, n_items = len(self.users_), len(self.items_)
        mu, b_user, b_item = fit_biases(users, items, ratings, n_users, n_items, BiasConfig())
        net = _MFNet(n_users, n_items, cfg.factors, mu, b_user, b_item).to(dev)
        self.net_ = net
        # rows no training event touches stay zero (with min_count 1: the cold bucket)
        untouched_u = torch.as_tensor(np.flatnonzero(np.bincount(users, minlength=n_users) == 0))
        untouched_i = torch.as_tensor(np.flatnonzero(np.bincount(items, minlength=n_items) == 0))
        untouched_u, untouched_i = untouched_u.to(dev), untouched_i.to(dev)
        net.zero_rows(untouched_u, untouched_i)

        u_t = torch.as_tensor(users, device=dev)
        i_t = torch.as_tensor(items, device=dev)
        r_t = torch.as_tensor(ratings, dtype=torch.float32, device=dev)
        has_valid = valid is not None and not valid.is_empty()
        if has_valid:
            vu = torch.as_tensor(self.users_.encode(valid[USER]), device=dev)
            vi = torch.as_tensor(self.items_.encode(valid[ITEM]), device=dev)
            vr = torch.tensor(valid[RATING].to_numpy(), dtype=torch.float32, device=dev)
        optimiser = torch.optim.SparseAdam(list(net.parameters()), lr=cfg.lr)
        log = EpochLog(cfg.patience)
        self.history_ = log.epochs
        n = len(ratings)
        for epoch in range(1, self.epochs + 1):
            t0 = time.perf_counter()
            order = torch.randperm(n, generator=generator).to(dev)
            total = torch.zeros((), device=dev)
            for b in range(0, n, cfg.batch_size):
                idx = order[b : b + cfg.batch_size]
                u, i, r = u_t[idx], i_t[idx], r_t[idx]
                optimiser.zero_grad(set_to_none=True)
                mse = (net(u, i) - r).square().mean()
                loss = mse + cfg.reg * net.penalty(u, i) / idx.numel()
                loss.backward()
                optimiser.step()
                total += mse.detach() * idx.numel()
            rmse = None
            if has_valid:
                with torch.no_grad():
                    pred = net(vu, vi).clamp(self.scale.low, self.scale.high)
                    rmse = float((pred - vr).square().mean().sqrt())
            if log.end_epoch(net, epoch, float(total) / max(n, 1), rmse,
                             time.perf_counter() - t0):
                break
        self.best_epoch_ = log.restore_best(net)
        net.zero_rows(untouched_u, untouched_i)
        self.mu_ = float(mu)
        self.p_ = net.p.weight.detach().cpu().numpy().astype(np.float64)
        self.q_ = net.q.weight.detach().cpu().numpy().astype(np.float64)
        self.b_user_ = net.bu.weight.detach().cpu().numpy()[:, 0].astype(np.float64)
        self.b_item_ = net.bi.weight.detach().cpu().numpy()[:, 0].astype(np.float64)
        elapsed = time.perf_counter() - started
        self.events_per_second_ = n * len(self.history_) / elapsed if elapsed > 0 else 0.0

    def _estimate(self, history: pl.DataFrame, queries: pl.DataFrame) -> Estimate:
        u, i = self.users_.encode(queries[USER]), self.items_.encode(queries[ITEM])
        factor = np.einsum("nk,nk->n", self.p_[u], self.q_[i])
        return Estimate(self.mu_ + self.user_bias(history, queries) + self.b_item_[i] + factor)

    def user_bias(self, history: pl.DataFrame, queries: pl.DataFrame) -> np.ndarray:
        """Folded in from visible history when there is any history, else the trained bias.

        The fold-in is the mean of the visible residuals shrunk toward the trained bias (0 for a
        user new to training): (sum + reg * b_u) / (n + reg). Shrinking toward 0, as BiasModel
        does, would undo the trained bias of every known user, since the residuals of the
        training events the model fits are near 0 once its own b_u is left out.
        """
        if not self.config.fold_in or history.is_empty():
            return self.b_user_[self.users_.encode(queries[USER])]
        hu, hi = self.users_.encode(history[USER]), self.items_.encode(history[ITEM])
        expected = self.mu_ + self.b_item_[hi] + np.einsum("nk,nk->n", self.p_[hu], self.q_[hi])
        sums = visible_sums(history, queries, pl.col(RATING) - pl.Series(expected))
        prior = self.b_user_[self.users_.encode(queries[USER])]
        reg = self.config.fold_in_reg
        return (sums["s"].to_numpy() + reg * prior) / (sums["n"].to_numpy() + reg)

    def _state(self) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        tensors = {"p": self.p_, "q": self.q_, "b_user": self.b_user_, "b_item": self.b_item_}
        return {k: torch.from_numpy(v) for k, v in tensors.items()}, {"mu": self.mu_}

    def _restore(self, tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> None:
        self.mu_ = float(meta["mu"])
        self.p_, self.q_ = tensors["p"].numpy(), tensors["q"].numpy()
        self.b_user_, self.b_item_ = tensors["b_user"].numpy(), tensors["b_item"].numpy()
