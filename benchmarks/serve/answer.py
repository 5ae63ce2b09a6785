"""In-process latency of one served prediction (`OnlineForecaster.answer`), no HTTP.

    .venv/bin/python benchmarks/serve/answer.py [--out benchmarks/serve/answer.json]
    PYTHONPATH=/path/to/other/checkout/src .venv/bin/python benchmarks/serve/answer.py --out ...

The default model fitted once on 20k synthetic events (`time` split; cached in --work), its
states initialised from train + valid, then 2,800 single-query answers (after 200 warm-up
ones) for random (user, item) pairs of the training data at a time after all events, the same
pairs on every run: some are pairs the user already rated. With PYTHONPATH pointing at another
checkout's src, the same measurement for that code (an A/B of one change, runs interleaved).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import polars as pl

import starcast
from starcast import Forecaster, split_events
from starcast.data.synth import SynthConfig, generate
from starcast.serving.online import OnlineForecaster
from starcast.serving.store import Store

QUERIES, WARM_UP = 3_000, 200


def measure(work: Path) -> dict:
    events = generate(SynthConfig(users=2_000, items=500, events=20_000, seed=1)).events
    split = split_events(events, "time")
    if not (work / "model").exists():
        Forecaster(seed=0).fit(split.train, split.valid).save(work / "model")
    online = OnlineForecaster(Forecaster.load(work / "model"),
                              Store(Path(tempfile.mkdtemp()) / "state.db"))
    online.initialise(pl.concat([split.train, split.valid]))
    rng = np.random.default_rng(0)
    users = split.train["user"].unique().sort().to_list()
    items = split.train["item"].unique().sort().to_list()
    at = np.array([int(events["ts"].max()) + 1])
    asked = [([users[rng.integers(len(users))]], [items[rng.integers(len(items))]])
             for _ in range(QUERIES)]
    seconds = []
    for k, (user, item) in enumerate(asked):
        start = time.perf_counter()
        online.answer(user, item, at)
        if k >= WARM_UP:
            seconds.append(time.perf_counter() - start)
    ms = np.array(seconds) * 1e3
    return {"code": str(Path(starcast.__file__).parent), "answers": len(ms),
            "mean_ms": float(ms.mean()), "p50_ms": float(np.median(ms)),
            "p99_ms": float(np.percentile(ms, 99)), "max_ms": float(ms.max())}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "answer-bench")
    parser.add_argument("--out", type=Path)
    parser.add_argument("--label", default="", help="what code this is, e.g. a commit")
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    row = {"label": args.label} | measure(args.work)
    print(json.dumps(row))
    if args.out:
        rows = json.loads(args.out.read_text()) if args.out.exists() else []
        args.out.write_text(json.dumps(rows + [row], indent=2))


if __name__ == "__main__":
    main()
