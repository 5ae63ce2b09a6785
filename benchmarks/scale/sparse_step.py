"""Does one optimiser step cost follow the rows a batch touches, not the table size?

    .venv/bin/python benchmarks/scale/sparse_step.py

An item embedding table (32 wide, as the lstm's) of 10k, 200k and 2M rows; each step looks up
the same number of rows (a batch of 64 customers x 50 events) and runs backward and the
optimiser step. SparseAdam (what starcast uses on CPU and gloo) against dense Adam (what a
dense table would need), median of 30 steps after 5 warm-up steps, 1 thread.
Written to benchmarks/scale/sparse_step.json.
"""

from __future__ import annotations

import json
import statistics
import time
from pathlib import Path

import torch
from run import _machine

OUT = Path(__file__).parent / "sparse_step.json"
ROWS, TOUCHED, DIM = (10_000, 200_000, 2_000_000), 64 * 50, 32


def step_seconds(rows: int, sparse: bool) -> float:
    torch.manual_seed(0)
    table = torch.nn.Embedding(rows, DIM, sparse=sparse)
    opt = (torch.optim.SparseAdam if sparse else torch.optim.Adam)(table.parameters(), lr=1e-2)
    times = []
    for step in range(35):
        ids = torch.randint(0, rows, (TOUCHED,))
        start = time.perf_counter()
        opt.zero_grad()
        table(ids).pow(2).sum().backward()
        opt.step()
        if step >= 5:
            times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    torch.set_num_threads(1)
    rows = [{"rows": n, "sparse_adam_ms": 1e3 * step_seconds(n, True),
             "dense_adam_ms": 1e3 * step_seconds(n, False)} for n in ROWS]
    for row in rows:
        print(json.dumps(row))
    OUT.write_text(json.dumps({"machine": _machine(), "touched_rows_per_step": TOUCHED,
                               "dim": DIM, "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
