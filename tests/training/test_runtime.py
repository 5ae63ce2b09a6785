"""Where training runs: the precision of its forward pass."""

import numpy as np
import pytest
import torch

from starcast import Forecaster
from starcast.config import LSTMConfig, StarcastConfig, TransformerConfig
from starcast.data.splits import split_events
from starcast.data.synth import SynthConfig, generate
from starcast.errors import ConfigError
from starcast.training import runtime
from starcast.training.runtime import autocast_dtype, cpu_has_bf16

# precision concerns the network
NETWORK_ONLY = StarcastConfig(lstm=LSTMConfig(factors=False),
                              transformer=TransformerConfig(factors=False))


@pytest.mark.parametrize(
    ("precision", "device", "dtype"),
    [("auto", "cpu", None), ("auto", "cuda", torch.bfloat16), ("fp32", "cuda", None),
     ("bf16", "cpu", torch.bfloat16)],
)
def test_autocast_follows_precision_and_device(precision, device, dtype, monkeypatch) -> None:
    monkeypatch.setattr(runtime, "cpu_has_bf16", lambda: True)
    assert autocast_dtype(precision, torch.device(device)) == dtype


def test_bf16_on_a_cpu_without_bfloat16_instructions_is_refused_before_training(monkeypatch):
    monkeypatch.setattr(runtime, "cpu_has_bf16", lambda: False)
    with pytest.raises(ConfigError, match="use fp32"):
        autocast_dtype("bf16", torch.device("cpu"))
    assert autocast_dtype("bf16", torch.device("cuda")) == torch.bfloat16


def test_unknown_precision_is_refused() -> None:
    with pytest.raises(ConfigError, match="'fp8'"):
        autocast_dtype("fp8", torch.device("cpu"))


@pytest.mark.skipif(not cpu_has_bf16(), reason="this CPU has no bfloat16 kernels")
@pytest.mark.parametrize("name", ["lstm", "transformer"])
def test_bf16_training_runs_the_same_code_path_on_the_cpu(name) -> None:
    parts = split_events(generate(SynthConfig(users=400, items=100, events=8_000, seed=2)).events,
                         "time")
    logs = {p: Forecaster(name, config=NETWORK_ONLY, seed=0, epochs=2, precision=p)
            .fit(parts.train, parts.valid).training_log["epochs"] for p in ("fp32", "bf16")}
    half, full = logs["bf16"][1:], logs["fp32"][1:]
    assert [e["loss"] for e in half] != [e["loss"] for e in full]  # the forward ran in bf16
    for mine, theirs in zip(half, full, strict=True):
        assert np.isfinite(mine["loss"])
        assert mine["valid_rmse"] == pytest.approx(theirs["valid_rmse"], rel=0.02)
