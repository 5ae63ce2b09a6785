"""Should early stopping read valid online (as the service reads), not offline?

    sets=synthetic,Digital_Music_5.partial,All_Beauty_5
    .venv/bin/python benchmarks/valid_reading.py offline $sets > /tmp/offline.log &
    .venv/bin/python benchmarks/valid_reading.py online $sets > /tmp/online.log
    cat /tmp/offline.log /tmp/online.log > benchmarks/results/valid-reading.log

An experiment, not part of the package. The default lstm picks its epoch (and its item tables
and state reading) by valid RMSE read offline: each valid event predicted from train alone,
as a test period is read by `starcast predict --history train+valid`. In the `time` protocol
that puts a customer's latest visible rating several events back, where the order's signal
has faded (benchmarks/sequence_signal.py). `online` reads valid as the service would, from
train plus the valid events before each one (the visibility rule), by wrapping
SequenceModel._train and _prepared (private methods). Everything else is the default: the
blend's weights and the star calibration are fitted as usual. `time` protocol only (in `loo`
valid is one event per customer, so the two readings are nearly the same), seeds 0 and 1;
test RMSE read offline and online, as benchmarks/accuracy.py reads them.
"""

import json
import sys
import time

import numpy as np
import polars as pl
from accuracy import events_of, set_label
from fm_kind import rmse

from starcast import Forecaster, split_events
from starcast.data.schema import RATING
from starcast.models import sequence

_train, _prepared = sequence.SequenceModel._train, sequence.SequenceModel._prepared


def _online_train(self, train: pl.DataFrame, valid: pl.DataFrame | None, *rest, **options):
    self._reading_valid = valid
    try:
        return _train(self, train, valid, *rest, **options)
    finally:
        self._reading_valid = None


def _online_prepared(self, history: pl.DataFrame, queries: pl.DataFrame):
    if getattr(self, "_reading_valid", None) is queries:  # the early stopping's reading
        history = pl.concat([history, queries])
    return _prepared(self, history, queries)


def measure(events: pl.DataFrame, name: str, seed: int) -> dict:
    """The default fitted on the `time` split: what it kept, and test RMSE read both ways."""
    split = split_events(events, "time")
    started = time.perf_counter()
    model = Forecaster(seed=seed).fit(split.train, split.valid)
    seconds = time.perf_counter() - started
    truth = split.test[RATING].to_numpy()
    offline = model.predict(pl.concat([split.train, split.valid]), split.test)["prediction"]
    online = model.predict(events, split.test)["prediction"]
    log = model.training_log
    return {"set": set_label(name), "seed": seed,
            "best_epoch": log["best_epoch"], "recurrent": log["recurrent"],
            "item_tables": log["item_tables"], "blend": np.round(log["blend"], 3).tolist(),
            "offline": round(rmse(truth, offline.to_numpy()), 4),
            "online": round(rmse(truth, online.to_numpy()), 4), "fit_s": round(seconds)}


def main(reading: str, names: str) -> None:
    if reading not in ("offline", "online"):
        raise SystemExit(f"reading: offline or online, got {reading!r}")
    if reading == "online":
        sequence.SequenceModel._train = _online_train
        sequence.SequenceModel._prepared = _online_prepared
    print_runs({"reading": reading}, names)


def print_runs(label: dict, names: str) -> None:
    """One line, `label` and `measure`, per comma-separated set name and seed 0 and 1."""
    for name in names.split(","):
        events = events_of(name)
        for seed in (0, 1):
            print(json.dumps(label | measure(events, name, seed)), flush=True)


if __name__ == "__main__":
    main(*sys.argv[1:3])
