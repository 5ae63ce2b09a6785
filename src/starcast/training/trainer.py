"""The training loop for sequence networks: length-bucketed batches, sparse embedding updates,
early stopping on valid RMSE with the best weights restored."""

from __future__ import annotations

import copy
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch

from starcast.config import SequenceConfig
from starcast.errors import ConfigError
from starcast.features.prefixes import PrefixQueries
from starcast.features.sequences import Sequences
from starcast.training.distributed import Cluster

Progress = Callable[[dict], None]
MIN_STEPS = 50  # optimizer steps an epoch takes at least, where batches of 8 allow it


@dataclass
class TrainLog:
    epochs: list[dict] = field(default_factory=list)
    best_epoch: int = 0
    refit_epochs: list[dict] = field(default_factory=list)
    events_per_second: float = 0.0
    blend: list[float] | None = None  # the FM's weights fitted on valid (models.blend)
    fm_mix: float | None = None  # the regression FM's share beside the probit's, fitted on valid
    item_tables: str = "learned"  # or "fixed": whether the item tables were trained
    recurrent: bool = True  # whether the head read the sequence state

    @property
    def chosen_rmse(self) -> float:
        """Valid RMSE of the kept epoch (nan without valid)."""
        kept = [e["valid_rmse"] for e in self.epochs if e["epoch"] == self.best_epoch]
        return kept[0] if kept else float("nan")


def length_batches(
    seqs: Sequences, batch_size: int, rng: np.random.Generator | None = None, ranks: int = 1
) -> list[np.ndarray]:
    """Groups of sequences of similar length (little padding); shuffled when `rng` is given.

    For `ranks` data-parallel processes the count is a multiple of `ranks`, and each run of
    `ranks` consecutive batches (one step: batch k goes to rank k % ranks) holds neighbours in
    length, so no rank waits long for another.
    """
    lengths = seqs.lengths
    jitter = rng.random(len(lengths)) if rng is not None else np.zeros(len(lengths))
    order = np.lexsort((jitter, lengths))
    batches = _divisible([order[i : i + batch_size] for i in range(0, len(order), batch_size)],
                         ranks)
    steps = [batches[i : i + ranks] for i in range(0, len(batches), ranks)]
    if rng is not None:
        rng.shuffle(steps)
    return [ids for step in steps for ids in step]


def _divisible(batches: list[np.ndarray], ranks: int) -> list[np.ndarray]:
    """Halve the largest batches until their count divides by `ranks`."""
    while len(batches) % ranks:
        i = max(range(len(batches)), key=lambda k: len(batches[k]))
        if len(batches[i]) < 2:
            raise ConfigError(f"{sum(map(len, batches))} training sequences cannot be shared "
                              f"by {ranks} processes; use fewer processes")
        half = len(batches[i]) // 2
        batches[i : i + 1] = [batches[i][:half], batches[i][half:]]
    return batches


@dataclass
class Validation:
    """The valid events: how to predict them with a network, and their true ratings."""

    predict: Callable[[torch.nn.Module], np.ndarray]
    target: np.ndarray


class CarriedStates:
    """End states of the chunks a later chunk of the same customer continues from.

    Truncated back-propagation: a chunk starts from the state its predecessor ended in (as of
    the predecessor's latest pass; batches are shuffled), without gradients through it.
    """

    def __init__(self, seqs: Sequences, hidden: int, device: torch.device) -> None:
        self.follows, self.device = seqs.follows, device
        has_next = np.zeros(len(seqs), dtype=bool)
        has_next[seqs.follows[seqs.follows >= 0]] = True
        self.slot = np.where(has_next, np.cumsum(has_next) - 1, -1)  # only those need storage
        n = int(has_next.sum())
        self.h = torch.zeros(n, hidden, device=device)
        self.c = torch.zeros(n, hidden, device=device)
        self.known = np.zeros(n, dtype=bool)

    def attach(self, batch: dict[str, torch.Tensor], ids: np.ndarray) -> None:
        if not self.known.any():
            return
        prev = self.follows[ids]
        slot = np.where(prev >= 0, self.slot[np.maximum(prev, 0)], -1)
        carried = (slot >= 0) & self.known[np.maximum(slot, 0)]
        if carried.any():
            rows = torch.from_numpy(np.maximum(slot, 0)).to(self.device)
            batch["carried"] = torch.from_numpy(carried).to(self.device)
            batch["h0"], batch["c0"] = self.h[rows], self.c[rows]

    def store(self, batch: dict[str, torch.Tensor], ids: np.ndarray) -> None:
        """Keep the end states of the chunks in `ids` that a later chunk continues."""
        rows = np.flatnonzero(self.slot[ids] >= 0)
        if rows.size:  # (full length: chunks with a successor are max_len, the batch's longest)
            slots = self.slot[ids[rows]]
            h_n, c_n = batch["final"]
            picked = torch.from_numpy(rows).to(self.device)
            self.h[slots], self.c[slots] = h_n[picked], c_n[picked]
            self.known[slots] = True


@torch.no_grad()
def predict_last(
    net: torch.nn.Module,
    seqs: Sequences,
    device: torch.device,
    batch_size: int = 512,
    max_positions: int = 1 << 18,
) -> tuple[np.ndarray, np.ndarray | None]:
    """Point prediction (and star probabilities) at the last position of every sequence.

    Batches of long sequences hold fewer of them (`max_positions` padded steps at most).
    """
    net.eval()
    mean = np.zeros(len(seqs), dtype=np.float64)
    probs = None
    for ids in _bounded(length_batches(seqs, batch_size), seqs.lengths, max_positions):
        batch = seqs.pad(ids, device)
        last = torch.as_tensor(seqs.lengths[ids] - 1, device=device)
        batch["mask"] = torch.zeros_like(batch["mask"])
        batch["mask"][torch.arange(len(ids), device=device), last] = True
        point, p = net.score(batch)  # in row order: one target per sequence
        mean[ids] = point.double().cpu().numpy()
        if p is not None:
            probs = np.zeros((len(seqs), p.shape[-1])) if probs is None else probs
            probs[ids] = p.double().cpu().numpy()
    return mean, probs


@torch.no_grad()
def predict_prefixes(
    net: torch.nn.Module,
    queries: PrefixQueries,
    feats: np.ndarray,
    device: torch.device,
    batch_size: int = 512,
    max_positions: int = 1 << 18,
) -> tuple[np.ndarray, np.ndarray | None]:
    """Point prediction (and star probabilities) per query from its user's history states."""
    net.eval()
    seqs, n = queries.seqs, len(queries.seq)
    before = net.encoder.empty().detach().to(device).expand(n, -1).clone()
    needed = np.flatnonzero(queries.pos >= 0)
    batches = _bounded(length_batches(seqs, batch_size), seqs.lengths, max_positions)
    batch_of, row_of = np.zeros(len(seqs), np.int64), np.zeros(len(seqs), np.int64)
    for b, ids in enumerate(batches):
        batch_of[ids], row_of[ids] = b, np.arange(len(ids))
    owner = batch_of[queries.seq[needed]]
    grouped = needed[np.argsort(owner, kind="stable")]
    bounds = np.r_[0, np.cumsum(np.bincount(owner, minlength=len(batches)))]
    for b, ids in enumerate(batches):
        asking = grouped[bounds[b] : bounds[b + 1]]
        if len(asking) and net.recurrent:  # (a head that reads no state needs none)
            states = net.states_after(seqs.pad(ids, device))
            rows = torch.as_tensor(row_of[queries.seq[asking]], device=device)
            before[torch.as_tensor(asking, device=device)] = states[
                rows, torch.as_tensor(queries.pos[asking], device=device)]
    emb, bias = net.item_representation(torch.as_tensor(queries.item, device=device),
                                        torch.as_tensor(queries.side, device=device))
    point, probs = net.head(before, emb, bias, torch.as_tensor(feats, device=device),
                            torch.as_tensor(queries.gap, device=device))
    return point.double().cpu().numpy(), None if probs is None else probs.double().cpu().numpy()


def _bounded(
    batches: list[np.ndarray], lengths: np.ndarray, max_positions: int
) -> list[np.ndarray]:
    """Split batches whose padded size (count x longest) exceeds `max_positions`."""
    out = []
    for ids in batches:
        per_batch = max(1, max_positions // int(lengths[ids].max()))
        out += [ids[i : i + per_batch] for i in range(0, len(ids), per_batch)]
    return out


def _tables(net: torch.nn.Module) -> list[torch.nn.Parameter]:
    """The embedding tables' weights: sparse gradients, only the rows a batch touched."""
    kinds = (torch.nn.Embedding, torch.nn.EmbeddingBag)
    return [p for m in net.modules() if isinstance(m, kinds) for p in m.parameters()]


def batch_size(config: SequenceConfig, sequences: int) -> int:
    """Sequences per step: the configured number, else enough for MIN_STEPS an epoch."""
    if config.batch_size is not None:
        return config.batch_size
    return int(np.clip(sequences // MIN_STEPS, 8, 64))


def _optimizers(net: torch.nn.Module, config: SequenceConfig,
                learned: list[torch.nn.Parameter]) -> list[torch.optim.Optimizer]:
    """AdamW for the dense weights; SparseAdam for the `learned` tables (none: fixed)."""
    table_ids = {id(p) for p in _tables(net)}
    dense = [p for p in net.parameters() if id(p) not in table_ids]
    optimizers: list[torch.optim.Optimizer] = [
        torch.optim.AdamW(dense, lr=config.lr, weight_decay=config.weight_decay)]
    if learned:
        optimizers.append(torch.optim.SparseAdam(learned, lr=config.lr_embedding))
    return optimizers


def train_sequences(
    net: torch.nn.Module,
    train: Sequences,
    valid: Validation | None,
    config: SequenceConfig,
    epochs: int,
    device: torch.device,
    rng: np.random.Generator,
    class_weights: torch.Tensor | None = None,
    progress: Progress | None = None,
    clip: tuple[float, float] = (1.0, 5.0),
    *,
    cluster: Cluster = Cluster(),
    autocast: torch.dtype | None = None,
    fixed_tables: bool = False,
) -> TrainLog:
    """Fit `net` on `train`; keep the weights of the epoch with the best valid RMSE.

    Under torchrun (`cluster`), each rank steps through its shard of every epoch's batches;
    `autocast`: the dtype of the forward pass (mixed precision), None for float32;
    `fixed_tables`: the item tables keep their values, only the dense weights learn.
    """
    tables = _tables(net)
    learned = [] if fixed_tables else tables
    for table in tables:
        table.requires_grad_(not fixed_tables)
    optimizers = _optimizers(net, config, learned)
    # (a batch whose targets have no item window leaves the item GRU unused; a network that
    # does not read its state never uses the encoder)
    model = cluster.wrap(net, tables, some_unused=config.item_window > 0 or not net.recurrent)
    dropout_rng = cluster.own_stream(rng)
    size = batch_size(config, len(train))
    log, best, best_errors, stale = TrainLog(), None, None, 0
    log.item_tables = "fixed" if fixed_tables else "learned"
    log.recurrent = net.recurrent
    if valid is not None:  # epoch 0, the untrained correction, may be the best there is
        untrained = copy.deepcopy(net.state_dict())
        best, best_errors = untrained, cluster.agree(_squared_errors(net, valid, clip))
        first_errors = best_errors
        log.epochs.append({"epoch": 0, "loss": float("nan"),
                           "valid_rmse": _rmse(best_errors), "seconds": 0.0})
    started, n_events = time.perf_counter(), 0
    carries = net.encoder.carries and net.recurrent  # (a stateless head runs no encoder)
    carry = CarriedStates(train, config.hidden, device) if carries else None
    for epoch in range(1, epochs + 1):
        net.train()
        total, count = 0.0, 0
        for ids in cluster.shard(length_batches(train, size, rng, cluster.world)):
            batch = train.pad(ids, device)
            if carry:
                carry.attach(batch, ids)
            _drop_items(batch, config.item_dropout, dropout_rng, device)
            with torch.autocast(device.type, dtype=autocast, enabled=autocast is not None):
                loss = model(batch, class_weights)
            if carry:
                carry.store(batch, ids)
            for opt in optimizers:
                opt.zero_grad()
            loss.backward()
            cluster.average_rows(learned)
            for opt in optimizers:
                opt.step()
            n = int(batch["mask"].sum())
            total, count, n_events = total + loss.item() * n, count + n, n_events + n
            if progress:
                progress({"epoch": epoch, "loss": total / max(count, 1), "events": n})
        errors = cluster.agree(_squared_errors(net, valid, clip)) if valid is not None else None
        total, count = cluster.total(total, count)
        entry = {
            "epoch": epoch,
            "loss": total / max(count, 1),
            "valid_rmse": _rmse(errors) if errors is not None else float("nan"),
            "seconds": time.perf_counter() - started,
        }
        log.epochs.append(entry)
        if progress:
            progress({**entry, "epoch_end": True})
        if errors is None or errors.mean() < best_errors.mean() - 1e-10:
            best, best_errors, stale, log.best_epoch = (
                copy.deepcopy(net.state_dict()),
                errors,
                0,
                epoch,
            )
        else:
            stale += 1
            if stale >= config.patience:
                break
    if valid is not None and not _clearly_better(best_errors, first_errors, config.significance):
        best, log.best_epoch = untrained, 0
    if best is not None:
        net.load_state_dict(best)
    (n_events,) = cluster.total(n_events)
    log.events_per_second = n_events / max(time.perf_counter() - started, 1e-9)
    return log


def _drop_items(batch: dict, share: float, rng: np.random.Generator, device: torch.device) -> None:
    """Replace a share of input item ids by the cold bucket, so that bucket learns new items."""
    if share <= 0:
        return
    drop = torch.from_numpy(rng.random(tuple(batch["item"].shape)) < share).to(device)
    batch["item"] = batch["item"].masked_fill(drop, 0)


def _squared_errors(
    net: torch.nn.Module, valid: Validation, clip: tuple[float, float]
) -> np.ndarray:
    return (np.clip(valid.predict(net), *clip) - valid.target) ** 2


def _rmse(squared_errors: np.ndarray) -> float:
    return float(np.sqrt(np.mean(squared_errors)))


def _clearly_better(errors: np.ndarray, baseline: np.ndarray, standard_errors: float) -> bool:
    """Whether `errors` beat `baseline` (paired, per valid event) by `standard_errors` SEs.

    A trained correction that beats the untrained one by less than the noise of the valid
    set tends to lose on test: the simpler model is kept unless the gain is clear.
    """
    gain = baseline - errors
    if len(gain) < 2:
        return gain.sum() > 0
    return gain.mean() > standard_errors * gain.std(ddof=1) / np.sqrt(len(gain))
