"""What the surprise share does for the ordinal head's own probabilities.

    .venv/bin/python benchmarks/ordinal_surprise.py All_Beauty_5,Digital_Music_5.partial \
        > benchmarks/results/ordinal-surprise.log

An experiment, not part of the package. The ordinal lstm (`head = "ordinal"`, otherwise the
defaults, seed 0) is fitted on each split; test is read offline (history train + valid) with
its fitted share e and with e set to 0, and the NLL of both is printed beside that of the
training star shares (train + valid, as benchmarks/accuracy.py reads them).
"""

import json
import sys

import numpy as np
import polars as pl
from accuracy import events_of, set_label

from starcast import Forecaster, split_events
from starcast.config import LSTMConfig, StarcastConfig
from starcast.data.schema import RATING
from starcast.evaluation.metrics import negative_log_likelihood
from starcast.models.stars import star_shares

STARS = [f"p{k}" for k in range(1, 6)]


def measure(events: pl.DataFrame, name: str, protocol: str) -> dict:
    split = split_events(events, protocol)
    known = pl.concat([split.train, split.valid])
    config = StarcastConfig(lstm=LSTMConfig(head="ordinal"))
    model = Forecaster(config=config, seed=0).fit(split.train, split.valid)
    truth = split.test[RATING].to_numpy()
    with_share = model.predict(known, split.test).select(STARS).to_numpy()
    share, model.model_.surprise_ = model.model_.surprise_, 0.0
    without = model.predict(known, split.test).select(STARS).to_numpy()
    shares = np.tile(star_shares(known[RATING].to_numpy(), 1.0, 5), (len(truth), 1))
    nll = lambda p: round(negative_log_likelihood(truth, p, 1), 4)  # noqa: E731
    return {"set": set_label(name), "protocol": protocol, "e": round(share, 4),
            "nll": nll(with_share), "nll_without_e": nll(without), "nll_shares": nll(shares)}


if __name__ == "__main__":
    for name in sys.argv[1].split(","):
        events = events_of(name)
        for protocol in ("loo", "time"):
            print(json.dumps(measure(events, name, protocol)), flush=True)
