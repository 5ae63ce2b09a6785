"""Where training runs: precision, and optimisers for sparse and dense embedding tables."""

import numpy as np
import pytest
import torch

from starcast import Forecaster
from starcast.config import LSTMConfig
from starcast.data.splits import split_events
from starcast.data.synth import SynthConfig, generate
from starcast.errors import ConfigError
from starcast.models.lstm_net import SequenceNet
from starcast.training.distributed import Cluster
from starcast.training.runtime import autocast_dtype
from starcast.training.trainer import _optimizers


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
    logs = {p: Forecaster(seed=0, epochs=2, precision=p).fit(parts.train, parts.valid)
            .training_log["epochs"] for p in ("fp32", "bf16")}
    half, full = logs["bf16"][1:], logs["fp32"][1:]
    assert [e["loss"] for e in half] != [e["loss"] for e in full]  # the forward ran in bf16
    for mine, theirs in zip(half, full, strict=True):
        assert np.isfinite(mine["loss"])
        assert mine["valid_rmse"] == pytest.approx(theirs["valid_rmse"], rel=0.02)


@pytest.mark.parametrize("sparse", [True, False])
def test_every_parameter_has_one_optimiser_fitting_its_gradients(sparse: bool) -> None:
    tokens = np.array([[0], [1], [2]])
    net = SequenceNet(LSTMConfig(), 3, 6, 4.0, np.zeros(3), 1.0, tokens, np.zeros(3),
                      sparse=sparse)
    optimizers = _optimizers(net, LSTMConfig())
    owned = [id(p) for opt in optimizers for group in opt.param_groups for p in group["params"]]
    assert sorted(owned) == sorted(id(p) for p in net.parameters())
    kinds = {type(opt) for opt in optimizers}
    assert (torch.optim.SparseAdam in kinds) == sparse
    assert (torch.optim.Adam in kinds) == (not sparse)


def test_dense_embedding_gradients_train_as_they_do_under_nccl(monkeypatch) -> None:
    parts = split_events(generate(SynthConfig(users=400, items=100, events=8_000, seed=2)).events,
                         "time")
    sparse = Forecaster(seed=0, epochs=2).fit(parts.train, parts.valid)
    monkeypatch.setattr(Cluster, "current", classmethod(lambda cls: cls(0, 1, "nccl")))
    dense = Forecaster(seed=0, epochs=2).fit(parts.train, parts.valid)
    assert not dense.model_.net_.item.sparse
    for mine, theirs in zip(dense.training_log["epochs"], sparse.training_log["epochs"],
                            strict=True):
        assert mine["valid_rmse"] == pytest.approx(theirs["valid_rmse"], rel=0.02)
