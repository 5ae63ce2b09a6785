"""Causal self-attention over the customer's latest `context` events (SASRec-like), in the
same network as the LSTM: only the sequence encoder differs (models.encoders)."""

from __future__ import annotations

from torch import nn

from starcast.config import TransformerConfig
from starcast.models.encoders import AttentionEncoder
from starcast.models.sequence import SequenceModel


class TransformerModel(SequenceModel):
    name = "transformer"
    config_type = TransformerConfig

    def _encoder(self, inputs: int) -> nn.Module:
        c = self.config
        return AttentionEncoder(inputs, c.hidden, c.layers, c.heads, c.context)

    def _context(self) -> int:
        """Each training chunk brings the `context` events before its first target, so every
        target reads the same window as a prediction would."""
        return self.config.context
