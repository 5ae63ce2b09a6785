"""The sequence rating network: one readable file, one config; the encoder is pluggable.

For each position t of a customer's sequence, the state after positions < t, the item's
representation and the target-side features predict rating t:

    prediction = mu + item bias + folded-in user bias + MLP(state, item, features)

Step t reads the item embedding, the rating's residual from mu + item bias (what the bias
model did not foresee) and the log time gap of event t; the encoder
(models.encoders: an LSTM or band self-attention) turns the steps into states. The heads:
`regression` (MSE) and `ordinal` (cumulative thresholds, probabilities per star).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from starcast.config import SequenceConfig
from starcast.models.encoders import State

STEP_EXTRA = 2  # step inputs beyond the item embedding: the rating residual and the log gap


class SequenceNet(nn.Module):
    def __init__(
        self,
        config: SequenceConfig,
        encoder: Callable[[int], nn.Module],
        n_items: int,
        n_features: int,
        mu: float,
        item_bias: np.ndarray,
        user_shrinkage: float,
        side_tokens: np.ndarray,
        token_bias: np.ndarray,
        stars: int = 5,
        recurrent: bool = True,
    ) -> None:
        super().__init__()
        self.config = config
        self.recurrent = recurrent  # False: the head reads zeros for the sequence state
        self.item = nn.Embedding(n_items, config.item_dim, sparse=True)
        self.item_bias = nn.Embedding(n_items, 1, sparse=True)
        nn.init.normal_(self.item.weight, std=0.05)
        with torch.no_grad():
            self.item_bias.weight.copy_(torch.as_tensor(item_bias, dtype=torch.float32)[:, None])
        # side features: a mean of token embeddings (and token biases) added to the item's own,
        # the only specific representation an item unseen in training has
        self.register_buffer("side_tokens", torch.as_tensor(side_tokens, dtype=torch.int64))
        n_tokens = int(side_tokens.max()) + 1
        self.has_side = n_tokens > 1
        self.side = nn.EmbeddingBag(n_tokens, config.item_dim, mode="mean", sparse=True,
                                    padding_idx=0)
        self.side_bias = nn.EmbeddingBag(n_tokens, 1, mode="mean", sparse=True, padding_idx=0)
        with torch.no_grad():
            self.side.weight.normal_(std=0.05)[0] = 0.0
            self.side_bias.weight.copy_(torch.as_tensor(token_bias, dtype=torch.float32)[:, None])
        self.encoder = encoder(config.item_dim + STEP_EXTRA)
        # learned shrinkage (softplus-parameterised) of the user, item and recent-item means
        inverse_softplus = lambda x: float(np.log(np.expm1(x)))  # noqa: E731
        self.shrink = nn.Parameter(
            torch.tensor([inverse_softplus(v) for v in (user_shrinkage, config.reg_item, 2.0)])
        )
        head_in = config.hidden + config.item_dim + n_features + 1
        if config.item_window > 0:
            # the item's own recent ratings, read by a recurrent net of the item side
            self.item_rnn = nn.GRU(2, config.item_hidden, batch_first=True)
            self.item_h0 = nn.Parameter(torch.zeros(config.item_hidden))
            head_in += config.item_hidden
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

    def score(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(expected rating [M], star probabilities [M, K] or None) at the M target positions.

        The encoder runs over every position (unless the head does not read its state); the
        head only where a prediction is wanted.
        """
        mask = batch["mask"]
        emb, item_bias = self.item_representation(batch["item"], batch["side"])
        before = self._states_before(batch, emb, item_bias) if self.recurrent else emb.new_zeros(
            *emb.shape[:2], self.config.hidden)
        item_state = self._item_state(batch) if self.config.item_window > 0 else None
        return self.head(before[mask], emb[mask], item_bias[mask], batch["feats"][mask],
                         batch["gap"][mask], item_state)

    def _states_before(self, batch: dict[str, torch.Tensor], emb: torch.Tensor,
                       item_bias: torch.Tensor) -> torch.Tensor:
        """[B, T, H]: the state before each position, from the chunk's carried state or the
        start (the state after its last position is kept in batch["final"])."""
        start = self._initial_state(batch)
        states, final = self.encoder.along(
            self.step_inputs(emb, item_bias, batch["rating"], batch["gap"]), start)
        if final is not None:  # for the chunk that follows
            batch["final"] = tuple(s.detach() for s in final)
        first = self.encoder.empty().expand(len(states), -1) if start is None else start[0]
        return torch.cat([first[:, None], states[:, :-1]], dim=1)

    def step_inputs(
        self, emb: torch.Tensor, bias: torch.Tensor, rating: torch.Tensor, gap: torch.Tensor
    ) -> torch.Tensor:
        """What the encoder reads at an event: item representation, the rating's residual
        from mu + item bias (`bias`), log gap. The residual rather than the rating: a
        customer's run of surprises is what the state should carry, and the rating would
        make the encoder learn every item's bias again to find it."""
        residual = (rating - self.mu - bias).unsqueeze(-1) / 2
        return torch.cat([emb, residual, gap.unsqueeze(-1)], dim=-1)

    def head(
        self,
        before: torch.Tensor,
        emb: torch.Tensor,
        item_bias: torch.Tensor,
        raw_feats: torch.Tensor,
        gap: torch.Tensor,
        item_state: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(expected rating [M], star probabilities [M, K] or None) from the user's state
        before the event, the item's representation and the visible sums (FEATURES)."""
        feats = self._shrunk_means(raw_feats)
        if not self.recurrent:
            before = torch.zeros_like(before)
        parts = [before, emb, feats, gap.unsqueeze(-1)]
        if item_state is not None:
            parts.append(item_state)
        base = self.mu + item_bias + feats[:, 0]
        raw = base + self.mlp(torch.cat(parts, dim=-1)).squeeze(-1)
        if self.config.head != "ordinal":
            return raw, None
        probs = self._star_probabilities(raw)
        stars = torch.arange(1, probs.shape[-1] + 1, device=raw.device, dtype=raw.dtype)
        return (probs * stars).sum(-1), probs

    def _item_state(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """[M, item_hidden]: the item GRU's state after each target's window (h0 if empty)."""
        mask = batch["mask"]
        length = batch["win_length"][mask]
        out = self.item_h0.expand(len(length), -1).clone()
        some = length > 0
        if not bool(some.any()):
            return out
        steps = torch.stack(
            [(batch["win_rating"][mask] - self.mu) / 2, batch["win_age"][mask]], dim=-1
        )[some]
        packed = nn.utils.rnn.pack_padded_sequence(
            steps, length[some].cpu(), batch_first=True, enforce_sorted=False
        )
        h0 = self.item_h0.expand(1, steps.shape[0], -1).contiguous()
        _, h_n = self.item_rnn(packed, h0)
        out[some] = h_n[0]
        return out

    def advance(
        self,
        items: torch.Tensor,
        side: torch.Tensor,
        rating: torch.Tensor,
        gap: torch.Tensor,
        lengths: torch.Tensor,
        start: State | None = None,
    ) -> State:
        """The served state (h, c) after the first `lengths` events of each padded sequence
        [B, T], from `start` or the empty state: a customer's state, moved on."""
        emb, bias = self.item_representation(items, side)
        return self.encoder.advance(self.step_inputs(emb, bias, rating, gap), lengths, start)

    def states_after(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """[B, T, H]: the state after each position of each sequence, from the empty state."""
        emb, bias = self.item_representation(batch["item"], batch["side"])
        return self.encoder.along(self.step_inputs(emb, bias, batch["rating"], batch["gap"]))[0]

    def _initial_state(self, batch: dict[str, torch.Tensor]) -> State | None:
        """The carried state where a chunk continues its customer, else None (the start)."""
        if "carried" not in batch:
            return None
        h0, c0 = self.encoder.start(batch["item"].shape[0])
        keep = batch["carried"][:, None]
        return torch.where(keep, batch["h0"], h0), torch.where(keep, batch["c0"], c0)

    def item_representation(
        self, items: torch.Tensor, side: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(embedding [B, T, D], bias [B, T]): the item's own plus its side features'."""
        emb, bias = self.item(items), self.item_bias(items).squeeze(-1)
        if not self.has_side:
            return emb, bias
        bags = self.side_tokens[side.flatten()]
        emb = emb + self.side(bags).view_as(emb)
        return emb, bias + self.side_bias(bags).view_as(bias)

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

    def forward(
        self, batch: dict[str, torch.Tensor], weights: torch.Tensor | None = None
    ) -> torch.Tensor:
        """The training loss: mean over target positions (`batch["mask"]`), plus L2 on the
        item rows this batch touched. (`score` gives the predictions.)"""
        mask = batch["mask"]
        pred, probs = self.score(batch)
        target = batch["target"][mask]
        if probs is None:
            per_event = (pred - target) ** 2
        else:
            stars = (target.round().long() - 1).clamp(0, probs.shape[-1] - 1)
            per_event = -torch.log(probs.gather(-1, stars[:, None]).squeeze(-1))
        if weights is not None:
            w = weights[(target.round().long() - 1).clamp(0, len(weights) - 1)]
            per_event = per_event * w / w.mean()
        return per_event.mean() + self._touched_l2(batch) / max(1, int(mask.sum()))

    def _touched_l2(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """L2 on the item and side-token rows this batch touched (looked up, so sparse)."""
        mask = batch["mask"]
        rows = torch.unique(batch["item"][mask])
        l2 = self.item(rows).pow(2).sum() + self.item_bias(rows).pow(2).sum()
        if self.has_side:
            tokens = torch.unique(self.side_tokens[batch["side"][mask]])[:, None]
            l2 = l2 + self.side(tokens).pow(2).sum() + self.side_bias(tokens).pow(2).sum()
        return self.config.l2_item * l2
