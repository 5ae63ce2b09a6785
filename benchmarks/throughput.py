"""Training events per second of `lstm` against `seed`, and batch prediction throughput, in one run.

    .venv/bin/python benchmarks/throughput.py [--events 100000] [--epochs 2]

Both models train on the same synthetic `time` split with 1 torch thread; `lstm` costs one LSTM
step per event, `seed` ten per training window. Written to benchmarks/results/throughput.json.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import polars as pl
import torch

from starcast import Forecaster, SynthConfig, generate, split_events

OUT = Path(__file__).parent / "results"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--epochs", type=int, default=2)
    args = parser.parse_args()
    data = generate(
        SynthConfig(users=args.events // 25, items=args.events // 100, events=args.events, seed=0)
    )
    split = split_events(data.events, "time")
    result = {
        "events": args.events,
        "train_events": split.train.height,
        "epochs": args.epochs,
        "machine": f"{platform.processor() or platform.machine()}, "
        f"{torch.get_num_threads()} torch threads available, "
        f"python {platform.python_version()}, torch {torch.__version__}",
    }
    history = pl.concat([split.train, split.valid])
    for name in ("lstm", "seed"):
        start = time.perf_counter()
        model = Forecaster(name, epochs=args.epochs).fit(split.train, None)
        fit = time.perf_counter() - start
        start = time.perf_counter()
        model.predict(history, split.test)
        pred = time.perf_counter() - start
        result[name] = {
            "fit_seconds": fit,
            "train_events_per_second": split.train.height * args.epochs / fit,
            "predictions_per_second": split.test.height / pred,
        }
        print(name, result[name], flush=True)
    result["lstm_over_seed_training_speed"] = (
        result["lstm"]["train_events_per_second"] / result["seed"]["train_events_per_second"]
    )
    OUT.mkdir(exist_ok=True)
    (OUT / "throughput.json").write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
