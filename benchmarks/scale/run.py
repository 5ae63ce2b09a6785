"""Time and peak memory of a model as data grows: 1M, 3M, 10M synthetic events.

    .venv/bin/python benchmarks/scale/run.py [--sizes 1000000,3000000,10000000]
        [--models lstm] [--epochs 1|default] [--out benchmarks/scale/results.json]

For each size (users = events / 10, items = events / 50, as the issue's reference workload):
`starcast data synth`, then `starcast train --data events.parquet --split time --epochs 1`
(`--epochs default`: the model's own early-stopped schedule) and a batch prediction of up to
1,000,000 queries (the test split, history = train + valid) with its test RMSE and macro-MAE,
each in its own process so that its peak resident memory is its own. Written to `--out`.
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

OUT = Path(__file__).parent / "results.json"
PREDICT = """
import sys, time, polars as pl
from starcast import Forecaster, read_events, split_events
events = read_events(sys.argv[1]).events
split = split_events(events, "time")
queries = split.test.head(1_000_000)
model = Forecaster.load(sys.argv[2])
start = time.perf_counter()
pred = model.predict(pl.concat([split.train, split.valid]), queries)
seconds = time.perf_counter() - start
from starcast.evaluation.metrics import summary
scores = summary(queries["rating"].to_numpy(), pred["prediction"].to_numpy())
print(queries.height, seconds, scores["rmse"], scores["macro_mae"])
"""


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", default="1000000,3000000,10000000")
    parser.add_argument("--models", default="lstm", help="comma-separated, one run each")
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--epochs", default="1", help="an epoch count, or 'default'")
    args = parser.parse_args()
    rows = []
    for size in map(int, args.sizes.split(",")):
        for model in args.models.split(","):
            rows.append({"model": model, "epochs": args.epochs} | _one(size, model, args.epochs))
            print(json.dumps(rows[-1]), flush=True)
            args.out.write_text(json.dumps({"machine": _machine(), "rows": rows}, indent=2))


def _one(size: int, model: str = "lstm", epochs: str = "1") -> dict:
    work = Path(tempfile.mkdtemp())
    data = work / "events.parquet"
    synth = _run(["data", "synth", "--users", size // 10, "--items", size // 50,
                  "--events", size, "--out", data])
    epoch_count = [] if epochs == "default" else ["--epochs", epochs]
    train = _run(["train", "--data", data, "--split", "time", *epoch_count, "--model", model,
                  "--out", work / "model"])
    predict = _python(PREDICT, data, work / "model")
    queries, seconds, rmse, macro = predict["stdout"].split()
    return {"events": size, "synth_seconds": synth["seconds"], "synth_peak_gb": synth["peak_gb"],
            "train_seconds": train["seconds"], "train_peak_gb": train["peak_gb"],
            "predict_queries": int(queries), "predict_seconds": float(seconds),
            "predict_process_peak_gb": predict["peak_gb"], "test_rmse": float(rmse),
            "test_macro_mae": float(macro)}


def _run(args: list) -> dict:
    return _measured([sys.executable, "-m", "starcast", *map(str, args)])


def _python(code: str, *args) -> dict:
    return _measured([sys.executable, "-c", code, *map(str, args)])


def _measured(command: list[str]) -> dict:
    """Wall seconds and the peak resident memory of this child alone (ru_maxrss of children
    is the largest child so far, so each command runs in a fresh wrapper process)."""
    wrapper = ("import resource, subprocess, sys, time; s = time.perf_counter(); "
               "r = subprocess.run(sys.argv[1:], capture_output=True, text=True); "
               "print(r.stdout, end=''); sys.stderr.write(r.stderr[-2000:]); "
               "print('\\n@@', time.perf_counter() - s, "
               "resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss); sys.exit(r.returncode)")
    done = subprocess.run([sys.executable, "-c", wrapper, *command], capture_output=True,
                          text=True)
    if done.returncode:
        raise RuntimeError(f"{command}: {done.stderr[-2000:]}")
    out, _, tail = done.stdout.rpartition("@@")
    seconds, kb = tail.split()
    return {"stdout": out.strip(), "seconds": float(seconds), "peak_gb": int(kb) / 2**20}


def _machine() -> str:
    import os

    return f"{platform.machine()}, {os.cpu_count()} cores, python {platform.python_version()}"


if __name__ == "__main__":
    assert resource  # (used by the wrapper; imported here so a missing module fails early)
    time.perf_counter()
    main()
