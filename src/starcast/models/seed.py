"""The `seed` preset: the reference model of the original design, reproduced faithfully.

Two stacked LSTM(50) layers read the customer's previous 10 ratings (each scaled to
rating / scale.high, left-padded with 0, oldest first) and a linear Dense(1) on the last hidden
state predicts rating / scale.high. Adam (lr 1e-3, Keras' epsilon 1e-7), mean squared error,
batch 32, shuffled every epoch, early stopping on valid RMSE with the best weights restored.
Weights are initialised as Keras does (Glorot-uniform input kernels, orthogonal recurrent
kernels, zero biases except a forget-gate bias of 1; Glorot-uniform Dense, zero bias).

Windows:

* training: every training event, its user's events sorted by (ts, item); the window is the up
  to `window` ratings strictly before it in that order. A user's first event is kept, with an
  all-zero window (the original sliding-window design drops it; keeping it teaches the model the
  answer it must give a customer with no history, who does reach predict).
* valid and predict: the visibility rule of `features.history` -- the user's history events with
  ts <= the query's ts, never one of the same (user, item) -- ordered by (ts, item), the last
  `window` of them. Valid windows read train + valid as history, like test reads everything.
  So an event on the same day as the query but of a later item id is visible at predict time,
  while in training only the earlier one in (ts, item) order is.

Without valid events there is no early stopping: all epochs run. `history_` losses are in the
model's own units (MSE of rating / scale.high); valid_rmse is in stars.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import polars as pl
import torch
from torch import nn

from starcast.config import SeedConfig
from starcast.data.schema import EVENT_COLUMNS, ITEM, RATING, TS, USER
from starcast.models.base import Estimate, TrainedModel
from starcast.training.epochs import EpochLog
from starcast.training.runtime import prepare, select_device

_G = "_g"  # a history row's position in the (user, ts, item) order
_Q = "_query"


def training_windows(events: pl.DataFrame, window: int) -> tuple[np.ndarray, np.ndarray]:
    """For each event, the up to `window` ratings of its user strictly before it in (ts, item).

    Returns (windows, ratings) in (user, ts, item) order: windows is (n, window), oldest first,
    left-padded with 0.0; ratings the events' own ratings.
    """
    ordered = events.select(USER, ITEM, RATING, TS).sort([USER, TS, ITEM], maintain_order=True)
    ratings = ordered[RATING].to_numpy().astype(np.float64)
    position = ordered.select(pl.int_range(pl.len()).over(USER))[:, 0].to_numpy()
    n = ordered.height
    out = np.zeros((n, window))
    rows = np.arange(n)
    for k in range(1, window + 1):  # k-th previous rating goes to column window - k
        has = position >= k
        out[has, window - k] = ratings[rows[has] - k]
    return out, ratings


def visible_windows(history: pl.DataFrame, queries: pl.DataFrame, window: int) -> np.ndarray:
    """Per query, in query order: the last `window` visible ratings of its user, oldest first.

    Visible: the user's history events with ts <= the query's ts, never one of the same
    (user, item). Ordered by (ts, item); left-padded with 0.0. Shape (len(queries), window).
    """
    n_q = queries.height
    out = np.zeros((n_q, window))
    if n_q == 0 or history.is_empty():
        return out
    h = (history.select(USER, ITEM, RATING, TS).sort([USER, TS, ITEM], maintain_order=True)
         .with_row_index(_G))
    q = queries.select(USER, ITEM, TS).with_row_index(_Q)
    codes = (
        pl.concat([h[ITEM], q[ITEM]]).cast(pl.Utf8).cast(pl.Categorical).to_physical()
        .cast(pl.Int64).to_numpy()
    )
    h_item, q_item = codes[: h.height], codes[h.height :]
    # the last history row of the user with ts <= the query's ts, and the user's first row
    ends = (
        h.with_columns(pl.col(_G).min().over(USER).alias("_start"))
        .group_by([USER, TS], maintain_order=True)
        .agg(pl.col(_G).last().alias("_end"), pl.col("_start").first())
        .sort(TS)
    )
    found = (
        q.sort(TS)
        .join_asof(ends, on=TS, by=USER, strategy="backward", check_sortedness=False)
        .sort(_Q)
    )
    end = found["_end"].fill_null(-1).to_numpy()
    start = found["_start"].fill_null(0).to_numpy()
    # visible events of the query's own (user, item) are skipped: look that many further back
    own = (
        q.join(h.select(USER, ITEM, pl.col(TS).alias("_ts_h")), on=[USER, ITEM])
        .filter(pl.col("_ts_h") <= pl.col(TS))
        .group_by(_Q)
        .len()
    )
    extra = int(own["len"].max()) if own.height else 0
    ratings = h[RATING].to_numpy().astype(np.float64)
    kept = np.zeros(n_q, dtype=np.int64)  # how many ratings each query has so far
    rows = np.arange(n_q)
    for j in range(window + extra):  # j-th most recent visible candidate
        idx = end - j
        ok = (idx >= start) & (end >= 0)
        safe = np.where(ok, idx, 0)
        take = ok & (h_item[safe] != q_item) & (kept < window)
        out[rows[take], window - 1 - kept[take]] = ratings[safe[take]]
        kept += take
    return out


class _SeedNet(nn.Module):
    def __init__(self, hidden: int, layers: int) -> None:
        super().__init__()
        self.lstm = nn.LSTM(1, hidden, num_layers=layers, batch_first=True)
        self.dense = nn.Linear(hidden, 1)
        self.keras_init()

    def keras_init(self) -> None:
        """Keras defaults: glorot_uniform kernels, orthogonal recurrent, unit_forget_bias."""
        h = self.lstm.hidden_size
        for name, param in self.lstm.named_parameters():
            if name.startswith("weight_ih"):
                nn.init.xavier_uniform_(param)
            elif name.startswith("weight_hh"):
                nn.init.orthogonal_(param)  # (4h, h): orthonormal columns
            elif name.startswith("bias_ih"):
                nn.init.zeros_(param)
                with torch.no_grad():
                    param[h : 2 * h] = 1.0  # torch gate order i, f, g, o
            elif name.startswith("bias_hh"):
                nn.init.zeros_(param)
        nn.init.xavier_uniform_(self.dense.weight)
        nn.init.zeros_(self.dense.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out, _ = self.lstm(x.unsqueeze(-1))
        return self.dense(out[:, -1]).squeeze(-1)


class SeedModel(TrainedModel):
    name = "seed"
    config_type = SeedConfig

    def _fit(self, train: pl.DataFrame, valid: pl.DataFrame | None) -> None:
        started = time.perf_counter()
        cfg = self.config
        self.device_, generator = prepare(self.train_config)
        self.train_events_ = train.select(EVENT_COLUMNS)
        net = _SeedNet(cfg.hidden, cfg.layers).to(self.device_)
        self.net_ = net
        x_np, y_np = training_windows(train, cfg.window)
        x = torch.tensor(x_np / self.scale.high, dtype=torch.float32, device=self.device_)
        y = torch.tensor(y_np / self.scale.high, dtype=torch.float32, device=self.device_)
        has_valid = valid is not None and not valid.is_empty()
        if has_valid:
            vx = visible_windows(pl.concat([self.train_events_, valid.select(EVENT_COLUMNS)]),
                                 valid, cfg.window)
            v_true = valid[RATING].to_numpy()
        optimiser = torch.optim.Adam(net.parameters(), lr=cfg.lr, eps=1e-7, fused=True)
        loss_fn = nn.MSELoss()
        log = EpochLog(cfg.patience)
        self.history_ = log.epochs
        n = x.shape[0]
        for epoch in range(1, self.epochs + 1):
            t0 = time.perf_counter()
            net.train()
            order = torch.randperm(n, generator=generator).to(self.device_)
            total = torch.zeros((), device=self.device_)
            for b in range(0, n, cfg.batch_size):
                idx = order[b : b + cfg.batch_size]
                optimiser.zero_grad(set_to_none=True)
                loss = loss_fn(net(x[idx]), y[idx])
                loss.backward()
                optimiser.step()
                total += loss.detach() * idx.numel()
            rmse = None
            if has_valid:
                pred = np.clip(self._forward(vx), self.scale.low, self.scale.high)
                rmse = float(np.sqrt(np.mean((pred - v_true) ** 2)))
            if log.end_epoch(net, epoch, float(total) / max(n, 1), rmse,
                             time.perf_counter() - t0):
                break
        self.best_epoch_ = log.restore_best(net)
        net.eval()
        elapsed = time.perf_counter() - started
        self.events_per_second_ = n * len(self.history_) / elapsed if elapsed > 0 else 0.0

    def _forward(self, windows: np.ndarray, batch: int = 8192) -> np.ndarray:
        """Predictions in stars for raw-rating windows, batched, without gradients."""
        self.net_.eval()
        out = []
        with torch.no_grad():
            for b in range(0, len(windows), batch):
                xb = torch.tensor(windows[b : b + batch] / self.scale.high, dtype=torch.float32,
                                  device=self.device_)
                out.append(self.net_(xb).cpu().numpy())
        if not out:
            return np.zeros(0)
        return np.concatenate(out).astype(np.float64) * self.scale.high

    def _estimate(self, history: pl.DataFrame, queries: pl.DataFrame) -> Estimate:
        source = self.train_events_ if history.is_empty() else history
        return Estimate(self._forward(visible_windows(source, queries, self.config.window)))

    def _state(self) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        """The network's weights and the training events (predict reads them without history)."""
        ev = self.train_events_
        tensors = {f"net.{k}": v for k, v in self.net_.state_dict().items()} | {
            "train.user": torch.from_numpy(self.users_.encode(ev[USER])),
            "train.item": torch.from_numpy(self.items_.encode(ev[ITEM])),
            "train.rating": torch.tensor(ev[RATING].to_numpy(), dtype=torch.float64),
            "train.ts": torch.tensor(ev[TS].to_numpy(), dtype=torch.int64),
        }
        return tensors, {}

    def _restore(self, tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> None:
        self.device_ = select_device(self.train_config.device)
        self.net_ = _SeedNet(self.config.hidden, self.config.layers).to(self.device_)
        self.net_.load_state_dict({k[4:]: v for k, v in tensors.items() if k.startswith("net.")})
        self.net_.eval()
        users = np.array([None, *self.users_.ids], dtype=object)
        items = np.array([None, *self.items_.ids], dtype=object)
        self.train_events_ = pl.DataFrame({
            USER: pl.Series(users[tensors["train.user"].numpy()], dtype=pl.Utf8),
            ITEM: pl.Series(items[tensors["train.item"].numpy()], dtype=pl.Utf8),
            RATING: tensors["train.rating"].numpy(),
            TS: tensors["train.ts"].numpy(),
        })
