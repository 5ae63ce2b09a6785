"""One long Gibbs chain or several short ones: the Bayesian FM's posterior mean at equal cost.

    .venv/bin/python benchmarks/fm_chains.py Digital_Music_5.partial,All_Beauty_5,synthetic 5 \
        > benchmarks/results/fm-chains.log

An experiment behind `fm.chains` (the FM beside the default network), not part of the package.
For each set, protocol and seed s (0 .. N-1), myFM's regression FM in the setting of the
accuracy issue fits train + valid and predicts test (its own exact posterior mean, no
truncation), under schedules of (chains x iterations per chain, draws averaged per chain):
1x300 (250 kept: the issue's setting), 4x75 (40), 6x50 (25), 10x30 (15), all 300 iterations,
and 2x300 (250 each: twice the cost). Chain c of seed s samples with seed 42 + s + 1000 c, so
every schedule's first chain starts where the issue's does. Test RMSE, predictions clipped to
[1, 5]; the last line per set and protocol is the mean over seeds and its paired standard error
against 1x300.
"""

import json
import sys

import numpy as np
import polars as pl
from accuracy import events_of, set_label

from starcast import split_events
from starcast.data.schema import RATING, RatingScale
from starcast.models import bayesian_fm as bfm

SCHEDULES = {"1x300": (1, 300, 250), "2x300": (2, 300, 250), "4x75": (4, 75, 40),
             "6x50": (6, 50, 25), "10x30": (10, 30, 15)}


def measure(name: str, seeds: int) -> None:
    events = events_of(name)
    for protocol in ("loo", "time"):
        split = split_events(events, protocol)
        known, truth = pl.concat([split.train, split.valid]), split.test[RATING].to_numpy()
        rows = []
        for s in range(seeds):
            row = {"set": set_label(name), "protocol": protocol, "seed": s}
            for label, schedule in SCHEDULES.items():
                pred = bfm.fit_predict(known, split.test, RatingScale(), False, 42 + s,
                                       schedule).mean
                row[label] = round(float(np.sqrt(np.mean((pred - truth) ** 2))), 4)
            rows.append(row)
            print(json.dumps(row), flush=True)
        summary = {"set": set_label(name), "protocol": protocol, "seeds": seeds}
        for label in SCHEDULES:
            diff = np.array([r[label] - r["1x300"] for r in rows])
            summary[label] = round(float(np.mean([r[label] for r in rows])), 4)
            summary[f"{label}-1x300"] = [round(float(diff.mean()), 4),
                                         round(float(diff.std(ddof=1) / np.sqrt(seeds)), 4)]
        print(json.dumps(summary), flush=True)


if __name__ == "__main__":
    for name in sys.argv[1].split(","):
        measure(name, int(sys.argv[2]))
