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

    def wrap(
        self, net: torch.nn.Module, tables: list[torch.nn.Parameter], some_unused: bool = False
    ) -> torch.nn.Module:
        """`net`, under DistributedDataParallel when there are several processes, for its
        dense weights; the embedding `tables` are left to `average_rows` after each backward.

        `some_unused`: a step may leave dense parameters without gradients (a graph walk).
        """
        if self.world == 1:
            return net
        ddp = torch.nn.parallel.DistributedDataParallel
        ignored = {id(p) for p in tables}
        names = [name for name, p in net.named_parameters() if id(p) in ignored]
        buffers = [name for name, _ in net.named_buffers()]  # constants: never synchronised
        ddp._set_params_and_buffers_to_ignore_for_model(net, names + buffers)
        for table in tables:  # (DDP broadcasts only what it syncs)
            dist.broadcast(table.data, src=0)
        return ddp(net, find_unused_parameters=some_unused)

    def average_rows(self, tables: list[torch.nn.Parameter]) -> None:
        """Average the embedding tables' sparse gradients over the ranks, in two collectives
        for all tables together (gloo's sparse all-reduce takes several per table; NCCL has
        none): every rank's touched rows are gathered and summed the same way on each rank.
        No tables (all fixed): nothing to average."""
        if self.world == 1 or not tables:
            return
        grads = [_coalesced(p) for p in tables]
        counts = torch.tensor([g.indices().shape[1] for g in grads], device=self._device())
        every_count = [torch.empty_like(counts) for _ in range(self.world)]
        dist.all_gather(every_count, counts)
        payload = torch.cat([torch.cat([g.indices()[0].double(), g.values().double().flatten()])
                             for g in grads])
        size = max(_payload_size(c, tables) for c in every_count)
        gathered = [torch.empty(size, dtype=torch.float64, device=payload.device)
                    for _ in range(self.world)]
        dist.all_gather(gathered, torch.nn.functional.pad(payload, (0, size - len(payload))))
        parts = [_unpack(g, c, tables) for g, c in zip(gathered, every_count, strict=True)]
        for k, p in enumerate(tables):
            rows = torch.cat([part[k][0] for part in parts])
            values = torch.cat([part[k][1] for part in parts]) / self.world
            # (rows come from gradients of this same table: in range by construction)
            p.grad = torch.sparse_coo_tensor(rows[None], values.to(p.dtype), p.shape,
                                             check_invariants=False).coalesce()

    def shard(self, batches: list[np.ndarray]) -> list[np.ndarray]:
        """This rank's batches of an epoch's (`length_batches(..., ranks=world)`): the same
        number on every rank, since DDP steps together."""
        if len(batches) % self.world:
            raise ValueError(f"{len(batches)} batches do not divide among {self.world} ranks")
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


def _coalesced(table: torch.nn.Parameter) -> torch.Tensor:
    if table.grad is None:  # untouched this step: no rows
        return torch.sparse_coo_tensor(torch.zeros((1, 0), dtype=torch.long),
                                       torch.zeros((0, table.shape[1])), table.shape,
                                       device=table.device, check_invariants=False)
    return table.grad.coalesce()


def _payload_size(counts: torch.Tensor, tables: list[torch.nn.Parameter]) -> int:
    return sum(int(n) * (1 + p.shape[1]) for n, p in zip(counts.tolist(), tables, strict=True))


def _unpack(
    payload: torch.Tensor, counts: torch.Tensor, tables: list[torch.nn.Parameter]
) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """One rank's (rows, values) per table, from its gathered payload."""
    out, at = [], 0
    for n, p in zip(counts.tolist(), tables, strict=True):
        rows = payload[at : at + n].long()
        values = payload[at + n : at + n * (1 + p.shape[1])].view(n, p.shape[1])
        out.append((rows, values))
        at += n * (1 + p.shape[1])
    return out


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
