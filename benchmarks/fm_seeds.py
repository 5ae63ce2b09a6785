"""How much the Bayesian FM reference moves with its random seed alone.

    .venv/bin/python benchmarks/fm_seeds.py [--seeds 5]

The accuracy issue's bars are single Gibbs chains at random_seed 42. This runs the same peers
(`evaluation.peers`, the issue's exact setting, fitted on train + valid, test predicted
offline) at seeds 42, 43, ... and reports each seed's test RMSE, their mean and standard
deviation, where seed 42 ranks, and the RMSE of the seeds' averaged predictions (several
chains averaged: what more posterior averaging buys). Written to
benchmarks/results/fm-seeds.{json,md}.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import polars as pl
from accuracy import DATA, TO_BEAT, events_of

from starcast import split_events
from starcast.data.schema import RatingScale
from starcast.evaluation import peers
from starcast.evaluation.metrics import rmse

OUT = Path(__file__).parent / "results"
SETS = ("All_Beauty_5", "Digital_Music_5.partial")


def measure(seeds: int) -> list[dict]:
    rows = []
    for name in SETS:
        events = events_of(name)
        for protocol in ("loo", "time"):
            split = split_events(events, protocol)
            known, truth = pl.concat([split.train, split.valid]), split.test["rating"].to_numpy()
            for peer in peers.BAYESIAN_FM:
                means = [peers.fit_predict(peer, known, split.test, RatingScale(), s).mean
                         for s in range(seeds)]
                scores = [rmse(truth, m) for m in means]
                rows.append({
                    "data": name, "protocol": protocol, "peer": peer,
                    "seeds": [42 + s for s in range(seeds)], "rmse": scores,
                    "mean": float(np.mean(scores)), "sd": float(np.std(scores, ddof=1)),
                    "seed_42_rank": int(np.argsort(np.argsort(scores))[0]) + 1,
                    "averaged": rmse(truth, np.mean(means, axis=0)),
                    "to_beat": TO_BEAT.get((name, protocol)),
                })
                print(json.dumps(rows[-1]), flush=True)
    return rows


def markdown(rows: list[dict]) -> str:
    lines = [
        "| data | protocol | peer | test RMSE per seed (42, 43, ...) | mean ± sd | seed 42's rank "
        "| seeds averaged | bar |",
        "|---|---|---|---|---:|---:|---:|---:|",
    ]
    for r in rows:
        per_seed = ", ".join(f"{x:.4f}" for x in r["rmse"])
        bar = "" if r["to_beat"] is None else f"{r['to_beat']:.4f}"
        lines.append(f"| {r['data']} | {r['protocol']} | {r['peer']} | {per_seed} | "
                     f"{r['mean']:.4f} ± {r['sd']:.4f} | {r['seed_42_rank']} of "
                     f"{len(r['rmse'])} | {r['averaged']:.4f} | {bar} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seeds", type=int, default=5)
    args = parser.parse_args()
    assert DATA.exists(), f"no shared data at {DATA}"
    rows = measure(args.seeds)
    OUT.mkdir(exist_ok=True)
    (OUT / "fm-seeds.json").write_text(json.dumps(rows, indent=2))
    (OUT / "fm-seeds.md").write_text(markdown(rows))


if __name__ == "__main__":
    main()
