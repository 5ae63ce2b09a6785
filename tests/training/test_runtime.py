"""Where training runs: the precision of its forward pass."""

import numpy as np
import pytest
import torch

from starcast import Forecaster
from starcast.config import LSTMConfig, StarcastConfig
from starcast.data.splits import split_events
from starcast.data.synth import SynthConfig, generate
from starcast.errors import ConfigError
from starcast.training.runtime import autocast_dtype

NETWORK_ONLY = StarcastConfig(lstm=LSTMConfig(factors=False))  # precision concerns the network


@pytest.mark.parametrize(
    ("precision", "device", "dtype"),
    [("auto", "cpu", None), ("auto", "cuda", torch.bfloat16), ("fp32", "cuda", None),
     ("bf16", "cpu", torch.bfloat16)],
)
def test_autocast_follows_precision_and_device(precision, device, dtype) -> None:
    assert autocast_dtype(precision, torch.device(device)) == dtype


def test_unknown_precision_is_refused() -> None:
    with pytest.raises(ConfigError, match="'fp8'"):
        autocast_dtype("fp8", torch.device("cpu"))


def test_bf16_training_runs_the_same_code_path_on_the_cpu() -> None:
    parts = split_events(generate(SynthConfig(users=400, items=100, events=8_000, seed=2)).events,
                         "time")
    logs = {p: Forecaster(config=NETWORK_ONLY, seed=0, epochs=2, precision=p)
            .fit(parts.train, parts.valid).training_log["epochs"] for p in ("fp32", "bf16")}
    half, full = logs["bf16"][1:], logs["fp32"][1:]
    assert [e["loss"] for e in half] != [e["loss"] for e in full]  # the forward ran in bf16
    for mine, theirs in zip(half, full, strict=True):
        assert np.isfinite(mine["loss"])
        assert mine["valid_rmse"] == pytest.approx(theirs["valid_rmse"], rel=0.02)
