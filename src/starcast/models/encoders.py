"""Sequence encoders: what a customer's state is after each of their events.

An encoder reads step inputs x [B, T, D] (one per event, oldest first) and gives the state
after each position [B, T, H]; `SequenceNet` predicts event t from the state after t - 1 (or
the encoder's `empty` state before a first event). Both encoders are causal. A served state is
a pair of vectors (h, c): h is what the head reads, c what the next step needs besides it.

- `LSTMEncoder`: the state is the LSTM's (h, c); a chunk may start from a carried state.
- `AttentionEncoder`: pre-norm causal self-attention where each layer attends over a band of
  recent positions; the spans add up to `context`, so the state after an event is exactly a
  function of the latest `context` events. Its served c is that window of step inputs.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

State = tuple[torch.Tensor, torch.Tensor]  # (h, c), [B, H] and [B, C]


class LSTMEncoder(nn.Module):
    def __init__(self, inputs: int, hidden: int) -> None:
        super().__init__()
        self.lstm = nn.LSTM(inputs, hidden, batch_first=True)
        self.h0 = nn.Parameter(torch.zeros(1, 1, hidden))
        self.c0 = nn.Parameter(torch.zeros(1, 1, hidden))
        self.carries = True  # training chunks continue from their predecessor's end state

    def empty(self) -> torch.Tensor:
        """[H]: the state before any event."""
        return self.h0[0, 0]

    def start(self, batch: int) -> State:
        """The learned start state for `batch` rows, as ([B, H], [B, H])."""
        return self.h0[0].expand(batch, -1), self.c0[0].expand(batch, -1)

    def along(self, x: torch.Tensor, start: State | None = None) -> tuple[torch.Tensor, State]:
        """(state after each position [B, T, H], state after the last position)."""
        h0, c0 = self.start(x.shape[0]) if start is None else start
        states, (h, c) = self.lstm(x, (h0[None].contiguous(), c0[None].contiguous()))
        return states, (h[0], c[0])

    def advance(self, x: torch.Tensor, lengths: torch.Tensor, start: State | None) -> State:
        """The state after the first `lengths` steps of each padded row, from `start`."""
        packed = nn.utils.rnn.pack_padded_sequence(x, lengths.cpu(), batch_first=True,
                                                   enforce_sorted=False)
        h0, c0 = self.start(x.shape[0]) if start is None else start
        _, (h, c) = self.lstm(packed, (h0[None].contiguous(), c0[None].contiguous()))
        return h[0], c[0]


def spans(context: int, layers: int) -> list[int]:
    """Per layer, the positions each position attends over (itself included), adding up to a
    receptive field of exactly `context` events: sum(span - 1) = context - 1."""
    reach, extra = divmod(context - 1, layers)
    return [1 + reach + (k < extra) for k in range(layers)]


class BandAttention(nn.Module):
    """Multi-head self-attention of each position over itself and the `span` - 1 before it,
    with a learned bias per head and relative position. Cost is linear in the length."""

    def __init__(self, width: int, heads: int, span: int) -> None:
        super().__init__()
        self.heads, self.span = heads, span
        self.qkv = nn.Linear(width, 3 * width)
        self.out = nn.Linear(width, width)
        self.distance = nn.Parameter(torch.zeros(heads, span))  # by offset 0 (oldest) .. span-1

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        b, t, w = h.shape
        q, k, v = self.qkv(h).view(b, t, 3, self.heads, w // self.heads).unbind(2)
        pad = self.span - 1
        k, v = (F.pad(a, (0, 0, 0, 0, pad, 0)) for a in (k, v))  # pad the front of the time axis
        # offset m looks back span - 1 - m positions: a shifted view, never a [T, T] matrix
        scores = torch.stack([(q * k[:, m : m + t]).sum(-1) for m in range(self.span)], -1)
        scores = scores / math.sqrt(w // self.heads) + self.distance
        before_start = (torch.arange(t, device=h.device)[:, None]
                        < torch.arange(pad, -1, -1, device=h.device)[None, :])
        scores = scores.masked_fill(before_start[None, :, None, :], float("-inf"))
        weights = torch.softmax(scores.float(), dim=-1).to(v.dtype)
        mixed = sum(weights[..., m, None] * v[:, m : m + t] for m in range(self.span))
        return self.out(mixed.reshape(b, t, w))


class Block(nn.Module):
    def __init__(self, width: int, heads: int, span: int) -> None:
        super().__init__()
        self.norm1, self.norm2 = nn.LayerNorm(width), nn.LayerNorm(width)
        self.attention = BandAttention(width, heads, span)
        self.mlp = nn.Sequential(nn.Linear(width, 4 * width), nn.GELU(),
                                 nn.Linear(4 * width, width))

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        h = h + self.attention(self.norm1(h))
        return h + self.mlp(self.norm2(h))


class AttentionEncoder(nn.Module):
    def __init__(self, inputs: int, width: int, layers: int, heads: int, context: int) -> None:
        super().__init__()
        self.inputs, self.context = inputs, context
        self.embed = nn.Linear(inputs, width)
        self.blocks = nn.ModuleList(Block(width, heads, s) for s in spans(context, layers))
        self.norm = nn.LayerNorm(width)
        self.h0 = nn.Parameter(torch.zeros(width))
        self.carries = False  # training chunks bring their context instead

    def empty(self) -> torch.Tensor:
        return self.h0

    def start(self, batch: int) -> State:
        """No event yet: the empty state and an empty window."""
        window = torch.zeros(batch, self.context * self.inputs + 1, device=self.h0.device)
        return self.h0.expand(batch, -1), window

    def along(self, x: torch.Tensor, start: State | None = None) -> tuple[torch.Tensor, None]:
        h = self.embed(x)
        for block in self.blocks:
            h = block(h)
        return self.norm(h), None

    def advance(self, x: torch.Tensor, lengths: torch.Tensor, start: State | None) -> State:
        """Append each row's new steps to its window and read the state after the last one.

        The window c holds the latest `context` step inputs, oldest first, then their count.
        """
        b = x.shape[0]
        kept = torch.zeros(b, dtype=torch.long) if start is None else start[1][:, -1].long()
        old = (torch.zeros(b, self.context, self.inputs) if start is None
               else start[1][:, :-1].reshape(b, self.context, self.inputs))
        total = kept + lengths.cpu()
        joined = torch.zeros(b, int(total.max()), self.inputs, dtype=x.dtype)
        for row in range(b):  # stored steps, then the new ones
            k, n = int(kept[row]), int(lengths[row])
            joined[row, :k], joined[row, k : k + n] = old[row, :k], x[row, :n]
        states, _ = self.along(joined)
        rows = torch.arange(b)
        h = states[rows, total - 1]
        window = torch.zeros(b, self.context * self.inputs + 1)
        for row in range(b):  # the latest `context` of them
            n = min(int(total[row]), self.context)
            latest = joined[row, int(total[row]) - n : int(total[row])]
            window[row, : n * self.inputs] = latest.flatten()
            window[row, -1] = n
        return h, window
