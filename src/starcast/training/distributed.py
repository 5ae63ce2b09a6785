"""Data-parallel training across processes started by torchrun.

Every rank reads the same data and prepares the same vocabularies and warm starts (all
deterministic), then trains on its own shard of the customers. DistributedDataParallel averages
the gradients, sparse embedding rows included, so the weights stay identical on every rank.
Decisions that end an epoch (the valid errors behind early stopping) are rank 0's, broadcast.

    torchrun --nproc-per-node 2 -m starcast train ... --distributed
    starcast train ... --nproc 2          # the same, torchrun started for you

Outside torchrun nothing here does anything: `Cluster.current()` is one process.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import torch
import torch.distributed as dist

from starcast.errors import ConfigError
from starcast.training.runtime import select_device

TORCHRUN_ENV = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")


@dataclass(frozen=True)
class Cluster:
    """This process's place among the training processes (one process: rank 0 of 1)."""

    rank: int = 0
    world: int = 1
    backend: str = ""

    @classmethod
    def current(cls) -> Cluster:
        if dist.is_available() and dist.is_initialized():
            return cls(dist.get_rank(), dist.get_world_size(), str(dist.get_backend()))
        return cls()

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def sparse_gradients(self) -> bool:
        """NCCL has no sparse all-reduce: on it the embedding tables take dense gradients."""
        return self.backend != "nccl"

    def wrap(self, net: torch.nn.Module, some_unused: bool = False) -> torch.nn.Module:
        """`net`, under DistributedDataParallel when there are several processes;
        `some_unused`: a step may leave parameters without gradients (costs a graph walk)."""
        if self.world == 1:
            return net
        # buffers (side-token table, mu) never change: no per-step broadcast of them
        return torch.nn.parallel.DistributedDataParallel(
            net, forward_sync_buffers=False, find_unused_parameters=some_unused
        )

    def shard(self, batches: list[np.ndarray]) -> list[np.ndarray]:
        """This rank's batches. All ranks get the same number (DDP steps together): the
        largest batches are halved until the count divides by the world size."""
        if self.world == 1:
            return batches
        batches = list(batches)
        while len(batches) % self.world:
            i = max(range(len(batches)), key=lambda k: len(batches[k]))
            if len(batches[i]) < 2:
                raise ConfigError(
                    f"{sum(map(len, batches))} training sequences cannot be shared by "
                    f"{self.world} processes; use fewer processes"
                )
            half = len(batches[i]) // 2
            batches[i : i + 1] = [batches[i][:half], batches[i][half:]]
        return batches[self.rank :: self.world]

    def own_stream(self, rng: np.random.Generator) -> np.random.Generator:
        """A generator for draws that differ between ranks (item dropout); `rng` stays in step
        on every rank, so the epoch's batch order is the same everywhere."""
        if self.world == 1:
            return rng
        return np.random.default_rng([int(rng.integers(2**63)), self.rank])

    def agree(self, values: np.ndarray) -> np.ndarray:
        """Rank 0's `values` on every rank: decisions taken from them are the same everywhere."""
        if self.world == 1:
            return values
        tensor = torch.as_tensor(values, dtype=torch.float64).to(self._device())
        dist.broadcast(tensor, src=0)
        return tensor.cpu().numpy()

    def total(self, *values: float) -> list[float]:
        """Sums over the ranks (epoch loss and event counts)."""
        if self.world == 1:
            return list(values)
        tensor = torch.tensor(values, dtype=torch.float64, device=self._device())
        dist.all_reduce(tensor)
        return tensor.tolist()

    def _device(self) -> torch.device:
        if self.backend == "nccl":
            return torch.device("cuda", torch.cuda.current_device())
        return torch.device("cpu")


@contextmanager
def process_group(enabled: bool, device: str = "auto") -> Iterator[Cluster]:
    """Within: this process's Cluster (torchrun's group joined when `enabled`); left after."""
    if not enabled:
        yield Cluster.current()
        return
    try:
        yield join(device)
    finally:
        leave()


def join(device: str = "auto") -> Cluster:
    """Join the process group torchrun describes in the environment: NCCL when the device is
    CUDA (one GPU per local rank), gloo on the CPU."""
    missing = [name for name in TORCHRUN_ENV if name not in os.environ]
    if missing:
        raise ConfigError(
            f"--distributed needs the environment torchrun sets ({', '.join(missing)} missing): "
            "start it with `torchrun --nproc-per-node N -m starcast train ... --distributed`, "
            "or use `starcast train --nproc N`"
        )
    if not dist.is_initialized():
        if select_device(device).type == "cuda":
            torch.cuda.set_device(int(os.environ["LOCAL_RANK"]))
            dist.init_process_group("nccl")
        else:
            dist.init_process_group("gloo")
    return Cluster.current()


def leave() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def torchrun_command(args: list[str], nproc: int) -> list[str]:
    """The command that runs `starcast <args> --distributed` in `nproc` local processes."""
    if nproc < 1:
        raise ConfigError(f"--nproc must be at least 1, got {nproc}")
    return [sys.executable, "-m", "torch.distributed.run", "--standalone",
            f"--nproc-per-node={nproc}", "-m", "starcast", *args, "--distributed"]
