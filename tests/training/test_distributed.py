"""Data-parallel training: sharding, the process group, and real 2-process gloo runs."""

import json
import subprocess
import sys
import textwrap
from types import SimpleNamespace

import numpy as np
import polars as pl
import pytest
import torch
from safetensors.torch import load_file

from starcast import Forecaster
from starcast.cli import _without_nproc
from starcast.config import LSTMConfig, StarcastConfig
from starcast.data.splits import split_events
from starcast.data.synth import SynthConfig, generate
from starcast.errors import ConfigError
from starcast.features.sequences import Sequences
from starcast.training.distributed import TORCHRUN_ENV, Cluster, join, torchrun_command
from starcast.training.trainer import length_batches


def _sequences(lengths: list[int]) -> Sequences:
    """Sequences of the given lengths (only their lengths matter to batching)."""
    starts = np.r_[0, np.cumsum(lengths)[:-1]]
    return SimpleNamespace(lengths=np.array(lengths), starts=starts)


@pytest.mark.parametrize("world", [1, 2, 3, 4])
def test_every_rank_steps_through_a_share_of_every_sequence_beside_its_neighbours(world) -> None:
    rng = np.random.default_rng(0)
    seqs = _sequences(list(rng.integers(1, 200, 64 * 40 + 20)))
    batches = length_batches(seqs, 64, np.random.default_rng(1), ranks=world)
    shards = [Cluster(rank, world).shard(batches) for rank in range(world)]
    assert len({len(shard) for shard in shards}) == 1  # DDP steps together
    held = np.concatenate([ids for shard in shards for ids in shard])
    assert np.array_equal(np.sort(held), np.arange(64 * 40 + 20))
    for step in zip(*shards, strict=True):  # the ranks of one step wait for the longest
        longest = [int(seqs.lengths[ids].max()) for ids in step]
        assert max(longest) - min(longest) <= 5 * world, longest  # 41+ batches over 1..199


def test_one_rank_batches_as_before() -> None:
    seqs = _sequences(list(np.random.default_rng(0).integers(1, 50, 300)))
    mine = length_batches(seqs, 32, np.random.default_rng(5), ranks=1)
    rng = np.random.default_rng(5)  # the single-process recipe: jittered sort, shuffled batches
    order = np.lexsort((rng.random(300), seqs.lengths))
    expected = [order[i : i + 32] for i in range(0, 300, 32)]
    rng.shuffle(expected)
    assert all(np.array_equal(a, b) for a, b in zip(mine, expected, strict=True))
    assert Cluster().shard(mine) is not None and len(Cluster().shard(mine)) == len(mine)


def test_one_process_keeps_its_generator() -> None:
    rng = np.random.default_rng(0)
    assert Cluster().own_stream(rng) is rng


def test_ranks_draw_their_own_dropout_but_keep_the_shared_stream_in_step() -> None:
    draws, shared = [], []
    for rank in range(2):
        rng = np.random.default_rng(7)
        draws.append(Cluster(rank, 2).own_stream(rng).random(5))
        shared.append(rng.random())
    assert not np.allclose(draws[0], draws[1])
    assert shared[0] == shared[1]


def test_fewer_sequences_than_processes_is_refused() -> None:
    with pytest.raises(ConfigError, match="cannot be shared by 3 processes"):
        length_batches(_sequences([4, 2]), 64, ranks=3)


def test_joining_outside_torchrun_names_what_is_missing(monkeypatch) -> None:
    for name in TORCHRUN_ENV:
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(ConfigError, match="RANK.*torchrun"):
        join("cpu")


def test_the_launch_command_passes_the_arguments_on() -> None:
    given = ["train", "--nproc", "2", "--data", "x.parquet", "--nproc=3", "--out", "m"]
    args = _without_nproc(given)
    assert args == ["train", "--data", "x.parquet", "--out", "m"]
    command = torchrun_command(args, 2)
    assert command[1:5] == ["-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2"]
    assert command[-7:] == ["starcast", *args, "--distributed"]
    with pytest.raises(ConfigError):
        torchrun_command(args, 0)


RANK_PROGRAM = """
    import sys
    import polars as pl
    from starcast import Forecaster
    from starcast.data.splits import split_events
    from starcast.config import LSTMConfig, StarcastConfig
    from starcast.training.distributed import process_group

    # a trained epoch, and a refit; no FM (each rank fits the same one: nothing distributed)
    CONFIG = StarcastConfig(lstm=LSTMConfig(significance=0.0, factors=False))

    with process_group(True, "cpu") as cluster:
        parts = split_events(pl.read_parquet(sys.argv[1]), "time")
        model = Forecaster(config=CONFIG, seed=0, epochs=3).fit(parts.train, parts.valid)
        model.save(f"{sys.argv[2]}/rank{cluster.rank}")
"""


@pytest.fixture(scope="module")
def events(tmp_path_factory):
    path = tmp_path_factory.mktemp("ddp") / "events.parquet"
    generate(SynthConfig(users=600, items=150, events=12_000, seed=3)).events.write_parquet(path)
    return path


def _torchrun(*args: str) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2",
         *args], capture_output=True, text=True, timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]


def test_two_gloo_processes_keep_identical_weights_close_to_one_process(events, tmp_path) -> None:
    program = tmp_path / "rank.py"
    program.write_text(textwrap.dedent(RANK_PROGRAM))
    _torchrun(str(program), str(events), str(tmp_path))
    ranks = [load_file(str(tmp_path / f"rank{r}" / "model.safetensors")) for r in (0, 1)]
    assert ranks[0].keys() == ranks[1].keys()
    for name in ranks[0]:  # gradients (sparse embedding rows included) were averaged
        assert torch.equal(ranks[0][name], ranks[1][name]), name
    parts = split_events(pl.read_parquet(events), "time")
    config = StarcastConfig(lstm=LSTMConfig(significance=0.0, factors=False))
    alone = Forecaster(config=config, seed=0, epochs=3).fit(parts.train, parts.valid).training_log
    together = Forecaster.load(tmp_path / "rank0").training_log
    assert together["best_epoch"] > 0 and len(together["refit_epochs"]) == together["best_epoch"]
    assert len(together["epochs"]) == len(alone["epochs"]) == 4
    assert together["epochs"][0]["valid_rmse"] == pytest.approx(alone["epochs"][0]["valid_rmse"])
    for mine, theirs in zip(together["epochs"][1:], alone["epochs"][1:], strict=True):
        assert mine["valid_rmse"] == pytest.approx(theirs["valid_rmse"], rel=0.01)
        assert np.isfinite(mine["loss"])


@pytest.mark.parametrize("name", ["lstm", "transformer"])
def test_train_nproc_writes_a_model_that_loads_and_predicts(events, tmp_path, name) -> None:
    out = tmp_path / "m"
    config = tmp_path / "short-fm.toml"  # the FM beside the network, in a short chain
    config.write_text(f"[{name}.fm]\nchains = 2\niterations = 30\nburn_in = 10\n"
                      "probit_iterations = 40\nprobit_burn_in = 10\n")
    done = subprocess.run(
        [sys.executable, "-m", "starcast", "train", "--data", str(events), "--split", "time",
         "--epochs", "2", "--out", str(out), "--nproc", "2", "--model", name,
         "--config", str(config)],
        capture_output=True, text=True, timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count(f"{name} model ->") == 1  # one rank speaks
    parts = split_events(pl.read_parquet(events), "time")
    loaded = Forecaster.load(out)
    predictions = loaded.predict(pl.concat([parts.train, parts.valid]), parts.test)
    assert predictions.height == parts.test.height
    truth = parts.test["rating"].to_numpy()
    rmse = float(np.sqrt(np.mean((predictions["prediction"].to_numpy() - truth) ** 2)))
    known = pl.concat([parts.train, parts.valid])["rating"].mean()
    assert rmse < float(np.sqrt(np.mean((known - truth) ** 2))) - 0.05  # beats the global mean
    saved = json.loads((out / "model.json").read_text())["config"]
    assert saved["model"] == name and saved[name]["fm"]["iterations"] == 30


def test_other_models_refuse_to_train_under_several_processes(monkeypatch) -> None:
    monkeypatch.setattr(Cluster, "current", classmethod(lambda cls: cls(0, 2, "gloo")))
    parts = split_events(generate(SynthConfig(users=50, items=20, events=500)).events, "time")
    with pytest.raises(ConfigError, match="'bias' does not train data-parallel"):
        Forecaster("bias").fit(parts.train, parts.valid)
