"""The LSTM rating network: one readable file, one config.

For each position t of a customer's sequence, the state after positions < t, the item's
representation and the target-side features predict rating t:

    prediction = mu + item bias + folded-in user bias + MLP(state, item, features)

Step t reads the item embedding, the rating and the log time gap of event t. The heads:
`regression` (MSE) and `ordinal` (cumulative thresholds, probabilities per star).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from starcast.config import LSTMConfig


class SequenceNet(nn.Module):
    def __init__(
        self,
        config: LSTMConfig,
        n_items: int,
        n_features: int,
        mu: float,
        item_bias: np.ndarray,
        user_shrinkage: float,
        stars: int = 5,
    ) -> None:
        super().__init__()
        self.config = config
        self.item = nn.Embedding(n_items, config.item_dim, sparse=True)
        self.item_bias = nn.Embedding(n_items, 1, sparse=True)
        nn.init.normal_(self.item.weight, std=0.05)
        with torch.no_grad():
            self.item_bias.weight.copy_(torch.as_tensor(item_bias, dtype=torch.float32)[:, None])
        self.lstm = nn.LSTM(config.item_dim + 2, config.hidden, batch_first=True)
        self.h0 = nn.Parameter(torch.zeros(1, 1, config.hidden))
        self.c0 = nn.Parameter(torch.zeros(1, 1, config.hidden))
        # learned shrinkage (softplus-parameterised) of the user, item and recent-item means
        inverse_softplus = lambda x: float(np.log(np.expm1(x)))  # noqa: E731
        self.shrink = nn.Parameter(
            torch.tensor([inverse_softplus(v) for v in (user_shrinkage, config.reg_item, 2.0)])
        )
        head_in = config.hidden + config.item_dim + n_features + 1
        self.mlp = nn.Sequential(
            nn.Dropout(config.dropout),
            nn.Linear(head_in, config.mlp),
            nn.ReLU(),
            nn.Linear(config.mlp, 1),
        )
        nn.init.zeros_(self.mlp[-1].weight)  # start from the bias model, learn the correction
        nn.init.zeros_(self.mlp[-1].bias)
        self.register_buffer("mu", torch.tensor(float(mu)))
        if config.head == "ordinal":
            # thresholds between stars, kept increasing by construction
            self.first_cut = nn.Parameter(torch.tensor(1.5))
            self.cut_steps = nn.Parameter(torch.zeros(stars - 2))
            self.sharpness = nn.Parameter(torch.tensor(1.0))

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Point predictions [B, T] at every position."""
        return self.score(batch)[0]

    def score(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(expected rating [B, T], star probabilities [B, T, K] or None)."""
        items = batch["item"]
        emb = self.item(items)
        steps = torch.cat(
            [emb, (batch["rating"] - self.mu).unsqueeze(-1) / 2, batch["gap"].unsqueeze(-1)], dim=-1
        )
        b = items.shape[0]
        h0, c0 = (p.expand(1, b, -1).contiguous() for p in (self.h0, self.c0))
        states, _ = self.lstm(steps, (h0, c0))
        before = torch.cat([h0.transpose(0, 1), states[:, :-1]], dim=1)
        feats = self._shrunk_means(batch["feats"])
        z = torch.cat([before, emb, feats, batch["gap"].unsqueeze(-1)], dim=-1)
        base = self.mu + self.item_bias(items).squeeze(-1) + feats[..., 0]
        raw = base + self.mlp(z).squeeze(-1)
        if self.config.head != "ordinal":
            return raw, None
        probs = self._star_probabilities(raw)
        stars = torch.arange(1, probs.shape[-1] + 1, device=raw.device, dtype=raw.dtype)
        return (probs * stars).sum(-1), probs

    def _shrunk_means(self, raw: torch.Tensor) -> torch.Tensor:
        """(sum, count) pairs -> (shrunk mean, log count) for user, item and recent item."""
        sums, counts = raw[..., 0::2], raw[..., 1::2]
        means = sums / (counts + F.softplus(self.shrink))
        return torch.stack([means, torch.log1p(counts)], dim=-1).flatten(-2)

    def _star_probabilities(self, raw: torch.Tensor) -> torch.Tensor:
        cuts = self.first_cut + torch.cat(
            [torch.zeros(1, device=raw.device), torch.cumsum(F.softplus(self.cut_steps) + 0.05, 0)]
        )
        above = torch.sigmoid((raw.unsqueeze(-1) - cuts) * F.softplus(self.sharpness) * 2)
        ones = torch.ones_like(above[..., :1])
        cumulative = torch.cat([ones, above, torch.zeros_like(ones)], dim=-1)  # P(r >= k)
        return (cumulative[..., :-1] - cumulative[..., 1:]).clamp_min(1e-6)

    def loss(self, batch: dict[str, torch.Tensor], weights: torch.Tensor | None) -> torch.Tensor:
        """Mean loss over target positions, plus L2 on the item rows this batch touched."""
        mask = batch["mask"]
        pred, probs = self.score(batch)
        target = batch["target"][mask]
        if probs is None:
            per_event = (pred[mask] - target) ** 2
        else:
            stars = (target.round().long() - 1).clamp(0, probs.shape[-1] - 1)
            per_event = -torch.log(probs[mask].gather(-1, stars[:, None]).squeeze(-1))
        if weights is not None:
            w = weights[(target.round().long() - 1).clamp(0, len(weights) - 1)]
            per_event = per_event * w / w.mean()
        rows = torch.unique(batch["item"][mask])
        l2 = self.config.l2_item * (
            self.item(rows).pow(2).sum() + self.item_bias(rows).pow(2).sum()
        )
        return per_event.mean() + l2 / max(1, int(mask.sum()))
