"""Test RMSE and macro-MAE of every model on the shared Amazon data, both split protocols.

    .venv/bin/python benchmarks/accuracy.py [--models bias,mf,seed,lstm] [--seeds 2]

With --models, only those rows are measured again; the recorded rows of other models stay.

Each model fits on train (early stopping on valid where it trains) with its defaults, then
predicts every test event twice:

* online (the headline): history = all events, under the visibility rule (only events with
  ts <= the query's ts, never the query's own (user, item)). This is how the service and
  `starcast predict` run: reviews keep arriving after training, and a recurrent model reads
  them without retraining. Under `time`, earlier test-period reviews are visible to later ones.
* offline: history = train + valid, nothing from the test period.

Where the data set has item metadata, `lstm` also runs with it (`lstm+items`). Results are
written to benchmarks/results/accuracy.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np
import polars as pl

from starcast import Forecaster, read_events, read_items, split_events
from starcast.evaluation.metrics import summary

DATA = Path(
    os.environ.get("STARCAST_DATA_DIR", Path(__file__).resolve().parents[2] / "shared/data")
)
SETS = {
    "All_Beauty_5.json.gz": None,
    "Digital_Music_5.partial.json.gz": "meta_Digital_Music.partial.json.gz",
}
TO_BEAT = {
    ("All_Beauty_5.json.gz", "loo"): 0.4042,
    ("All_Beauty_5.json.gz", "time"): 1.9364,
    ("Digital_Music_5.partial.json.gz", "loo"): 0.7187,
    ("Digital_Music_5.partial.json.gz", "time"): 0.7891,
}
OUT = Path(__file__).parent / "results"


def run(models: list[str], seeds: int) -> list[dict]:
    rows = []
    for name, meta in SETS.items():
        events = read_events(DATA / "amazon" / name).events
        items = read_items(DATA / "amazon" / meta).items if meta else None
        variants = [(m, None) for m in models]
        if items is not None and "lstm" in models:
            variants.append(("lstm+items", items))
        for protocol in ("loo", "time"):
            split = split_events(events, protocol)
            histories = {
                "online": pl.concat([split.train, split.valid, split.test]),
                "offline": pl.concat([split.train, split.valid]),
            }
            for label, side in variants:
                row = _measure(label, side, split, histories, seeds)
                row |= {"data": name, "protocol": protocol, "to_beat": TO_BEAT[(name, protocol)]}
                rows.append(row)
                print(json.dumps(row), flush=True)
    return rows


def _measure(label, items, split, histories, seeds) -> dict:
    truth = split.test["rating"].to_numpy()
    scores = {h: [] for h in histories}
    seconds = 0.0
    for seed in range(seeds):
        start = time.perf_counter()
        fitted = Forecaster(label.split("+")[0], seed=seed).fit(split.train, split.valid, items)
        seconds += time.perf_counter() - start
        for h, history in histories.items():
            pred = fitted.predict(history, split.test)["prediction"].to_numpy()
            scores[h].append(summary(truth, pred))
    row = {"model": label, "seeds": seeds, "fit_seconds": seconds / seeds}
    for h, s in scores.items():
        row[f"{h}_rmse"] = float(np.mean([x["rmse"] for x in s]))
        row[f"{h}_rmse_spread"] = float(np.std([x["rmse"] for x in s]))
        row[f"{h}_macro_mae"] = float(np.mean([x["macro_mae"] for x in s]))
    return row


def markdown(rows: list[dict]) -> str:
    lines = [
        "| data | protocol | model | online RMSE (± seeds) | to beat | online macro-MAE "
        "| offline RMSE | offline macro-MAE | fit s |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['data'].split('.')[0]} | {r['protocol']} | {r['model']} | "
            f"{r['online_rmse']:.4f} ±{r['online_rmse_spread']:.4f} | {r['to_beat']:.4f} | "
            f"{r['online_macro_mae']:.4f} | {r['offline_rmse']:.4f} | "
            f"{r['offline_macro_mae']:.4f} | {r['fit_seconds']:.1f} |"
        )
    return "\n".join(lines) + "\n"


def _merged(fresh: list[dict]) -> list[dict]:
    """Fresh rows replace recorded ones of the same (data, protocol, model); others stay."""
    path = OUT / "accuracy.json"
    recorded = json.loads(path.read_text()) if path.is_file() else []
    key = lambda r: (r["data"], r["protocol"], r["model"])  # noqa: E731
    by_key = {key(r): r for r in recorded} | {key(r): r for r in fresh}
    order = {(d, p): i for i, (d, p) in enumerate(TO_BEAT)}
    return sorted(by_key.values(), key=lambda r: (order[(r["data"], r["protocol"])],))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--models", default="bias,mf,seed,lstm")
    parser.add_argument("--seeds", type=int, default=2)
    args = parser.parse_args()
    rows = _merged(run(args.models.split(","), args.seeds))
    OUT.mkdir(exist_ok=True)
    (OUT / "accuracy.json").write_text(json.dumps(rows, indent=2))
    (OUT / "accuracy.md").write_text(markdown(rows))


if __name__ == "__main__":
    main()
