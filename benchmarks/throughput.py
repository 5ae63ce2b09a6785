"""Training events per second of `lstm` and `transformer` against `seed`, and batch prediction
throughput, in one run.

    .venv/bin/python benchmarks/throughput.py [--events 100000] [--epochs 3] [--repeats 3]

The models train on the same synthetic `time` split with 1 torch thread; `lstm` costs one LSTM
step per event, `transformer` one band-attention step per event over up to `context` earlier
ones (and each training chunk repeats its `context` predecessors), `seed` ten per window. Two
speeds per model: the training loop's (events, or windows, per second of epoch time: what N vs
10N steps buys) and the whole fit's (ALS warm start, feature building and vocabularies
included; the FM beside the network is off, see NETWORK_ONLY). Torch's lazily imported
optimiser machinery is loaded before either clock starts, so neither pays it. The machine is
shared and noisy: the models are measured `--repeats` times, interleaved, and the medians (of
speeds and of the per-repeat ratios) are recorded with every run. Written to
benchmarks/results/throughput.json.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from pathlib import Path

import polars as pl
import torch

from starcast import Forecaster, SynthConfig, generate, split_events
from starcast.config import LSTMConfig, StarcastConfig, TransformerConfig

OUT = Path(__file__).parent / "results"
# the sequence networks without the factorization machine beside them: it is no part of the
# training loop, and its two fits would dwarf the whole-fit times compared here
NETWORK_ONLY = StarcastConfig(lstm=LSTMConfig(factors=False),
                              transformer=TransformerConfig(factors=False))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    data = generate(
        SynthConfig(users=args.events // 25, items=args.events // 100, events=args.events, seed=0)
    )
    split = split_events(data.events, "time")
    result = {
        "events": args.events,
        "train_events": split.train.height,
        "epochs": args.epochs,
        "repeats": args.repeats,
        "machine": f"{platform.processor() or platform.machine()}, "
        f"{torch.get_num_threads()} torch threads available, "
        f"python {platform.python_version()}, torch {torch.__version__}",
    }
    history = pl.concat([split.train, split.valid])
    torch.optim.Adam([torch.nn.Parameter(torch.zeros(1))])  # the one-off import, off the clock
    runs: dict[str, list[dict]] = {"lstm": [], "transformer": [], "seed": []}
    for _ in range(args.repeats):  # interleaved, so both meet the same machine load
        for name in runs:
            runs[name].append(_measure(name, split, history, args.epochs))
            print(name, runs[name][-1], flush=True)
    for name, measured in runs.items():
        result[name] = {k: statistics.median(m[k] for m in measured) for k in measured[0]}
        result[name]["runs"] = measured
    for name in ("lstm", "transformer"):
        for speed in ("loop_events_per_second", "fit_events_per_second"):
            ratios = [a[speed] / b[speed] for a, b in zip(runs[name], runs["seed"], strict=True)]
            result[f"{name}_over_seed_{speed}"] = statistics.median(ratios)
            result[f"{name}_over_seed_{speed}_per_repeat"] = ratios
    OUT.mkdir(exist_ok=True)
    (OUT / "throughput.json").write_text(json.dumps(result, indent=2))
    print(json.dumps({k: v for k, v in result.items() if k not in runs}, indent=2))


def _measure(name: str, split, history: pl.DataFrame, epochs: int) -> dict:
    start = time.perf_counter()
    model = Forecaster(name, NETWORK_ONLY, epochs=epochs).fit(split.train, None)
    fit = time.perf_counter() - start
    start = time.perf_counter()
    model.predict(history, split.test)
    pred = time.perf_counter() - start
    return {
        "fit_seconds": fit,
        "loop_events_per_second": _loop_speed(model.model_, split.train.height),
        "fit_events_per_second": split.train.height * epochs / fit,
        "predictions_per_second": split.test.height / pred,
    }


def _loop_speed(model, n_events: int) -> float:
    """Training events per second of epoch time (seed: one window per event)."""
    if hasattr(model, "log_"):
        return model.log_.events_per_second
    return n_events * len(model.history_) / sum(h["seconds"] for h in model.history_)


if __name__ == "__main__":
    main()
