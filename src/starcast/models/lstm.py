"""The default forecaster model: an LSTM reads every event of the customer's history."""

from __future__ import annotations

from torch import nn

from starcast.config import LSTMConfig
from starcast.models.encoders import LSTMEncoder
from starcast.models.sequence import SequenceModel


class LSTMModel(SequenceModel):
    name = "lstm"
    config_type = LSTMConfig

    def _encoder(self, inputs: int) -> nn.Module:
        return LSTMEncoder(inputs, self.config.hidden)
