"""Truncated back-propagation: long customers train in chunks that carry their state on."""

import numpy as np
import polars as pl
import torch

from starcast.features.sequences import ITEM_INDEX, SIDE_INDEX, training_sequences
from starcast.training.trainer import CarriedStates


def sequences(lengths: dict[str, int], max_len: int):
    rows = [(u, f"i{k}", 5.0, k) for u, n in lengths.items() for k in range(n)]
    events = pl.DataFrame(rows, schema=["user", "item", "rating", "ts"], orient="row")
    events = events.with_columns(pl.lit(1).alias(ITEM_INDEX), pl.lit(0).alias(SIDE_INDEX))
    return training_sequences(events.sort(["user", "ts", "item"]), np.zeros((events.height, 1)),
                              max_len)


def test_chunks_of_one_customer_point_to_their_predecessor() -> None:
    seqs = sequences({"a": 10, "b": 3}, max_len=4)
    assert seqs.lengths.tolist() == [4, 4, 2, 3]
    assert seqs.follows.tolist() == [-1, 0, 1, -1]


def test_a_chunk_starts_where_its_predecessor_ended() -> None:
    seqs = sequences({"a": 10, "b": 3}, max_len=4)
    carry = CarriedStates(seqs, hidden=2, device=torch.device("cpu"))
    first = {"item": torch.zeros(2, 4)}
    carry.attach(first, np.array([0, 3]))
    assert "carried" not in first  # nothing stored yet: the learned start state
    end = torch.tensor([[1.0, 2.0], [3.0, 4.0]])
    carry.store({"final": (end, -end)}, np.array([0, 3]))  # chunk 3 has no successor
    nxt = {"item": torch.zeros(2, 4)}
    carry.attach(nxt, np.array([1, 2]))
    assert nxt["carried"].tolist() == [True, False]  # chunk 2's predecessor has not run yet
    assert nxt["h0"][0].tolist() == [1.0, 2.0] and nxt["c0"][0].tolist() == [-1.0, -2.0]
