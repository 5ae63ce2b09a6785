"""Test RMSE and macro-MAE of every model on the shared Amazon data, both split protocols.

    .venv/bin/python benchmarks/accuracy.py [--models bias,mf,seed,lstm] [--seeds 1]

Each model fits on train (early stopping on valid where it trains), then predicts the test
events with history = train + valid (the visibility rule applies). Results are written to
benchmarks/results/accuracy.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np
import polars as pl

from starcast import Forecaster, read_events, split_events
from starcast.evaluation.metrics import summary

DATA = Path(
    os.environ.get("STARCAST_DATA_DIR", Path(__file__).resolve().parents[2] / "shared/data")
)
SETS = ("All_Beauty_5.json.gz", "Digital_Music_5.partial.json.gz")
TO_BEAT = {
    ("All_Beauty_5.json.gz", "loo"): 0.4042,
    ("All_Beauty_5.json.gz", "time"): 1.9364,
    ("Digital_Music_5.partial.json.gz", "loo"): 0.7187,
    ("Digital_Music_5.partial.json.gz", "time"): 0.7891,
}
OUT = Path(__file__).parent / "results"


def run(models: list[str], seeds: int) -> list[dict]:
    rows = []
    for name in SETS:
        events = read_events(DATA / "amazon" / name).events
        for protocol in ("loo", "time"):
            split = split_events(events, protocol)
            history = pl.concat([split.train, split.valid])
            truth = split.test["rating"].to_numpy()
            for model in models:
                scores, seconds = [], 0.0
                for seed in range(seeds):
                    start = time.perf_counter()
                    fitted = Forecaster(model, seed=seed).fit(split.train, split.valid)
                    seconds += time.perf_counter() - start
                    pred = fitted.predict(history, split.test)["prediction"].to_numpy()
                    scores.append(summary(truth, pred))
                row = {
                    "data": name,
                    "protocol": protocol,
                    "model": model,
                    "seeds": seeds,
                    "rmse": float(np.mean([s["rmse"] for s in scores])),
                    "rmse_spread": float(np.std([s["rmse"] for s in scores])),
                    "macro_mae": float(np.mean([s["macro_mae"] for s in scores])),
                    "fit_seconds": seconds / seeds,
                    "to_beat": TO_BEAT[(name, protocol)],
                }
                rows.append(row)
                print(json.dumps(row), flush=True)
    return rows


def markdown(rows: list[dict]) -> str:
    lines = [
        "| data | protocol | model | test RMSE (± seeds) | to beat | macro-MAE | fit s |",
        "|---|---|---|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['data'].split('.')[0]} | {r['protocol']} | {r['model']} | "
            f"{r['rmse']:.4f} ±{r['rmse_spread']:.4f} | {r['to_beat']:.4f} | "
            f"{r['macro_mae']:.4f} | {r['fit_seconds']:.1f} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--models", default="bias,mf,seed,lstm")
    parser.add_argument("--seeds", type=int, default=1)
    args = parser.parse_args()
    rows = run(args.models.split(","), args.seeds)
    OUT.mkdir(exist_ok=True)
    (OUT / "accuracy.json").write_text(json.dumps(rows, indent=2))
    (OUT / "accuracy.md").write_text(markdown(rows))


if __name__ == "__main__":
    main()
