"""Is the FM refit on train + valid worth its two extra fits, given weights fitted for the FM
fitted on train?

    .venv/bin/python benchmarks/fm_refit.py Digital_Music_5.partial,All_Beauty_5 \
        > benchmarks/results/fm-refit.log

An experiment, not part of the package. The default lstm is fitted as usual; blend_weights.py's
capture keeps the train-round FMs with the share and weights fitted on valid. Test is read
offline (history train + valid) by the final network, blended two ways with the same weights:
`refit`, the default (the FMs refit on train + valid), and `train_fm`, the train-round FMs. For
`train_fm` every test query takes its group's weight (new or known user to that FM) even where
the history holds valid events that FM never saw, which the served rule would give to the
network alone; `train_fm_rule` is that served rule. Also the FMs alone and the network alone.
"""

import sys

import numpy as np
import polars as pl
from blend_weights import captured
from fm_kind import print_runs, rmse

from starcast import Forecaster, split_events
from starcast.data.schema import ITEM, RATING, TS, USER
from starcast.features.history import visible_counts


def measure(events: pl.DataFrame, name: str, protocol: str, seed: int) -> dict:
    split = split_events(events, protocol)
    known = pl.concat([split.train, split.valid])
    test = split.test
    model = Forecaster(seed=seed).fit(split.train, split.valid).model_
    truth = test[RATING].to_numpy()
    ids = (test[USER], test[ITEM], test[TS].to_numpy())
    net = np.asarray(model._network_estimate(known, test).mean)
    visible = visible_counts(known, test)
    refit, train_fm = model.blend_, captured["blend"]
    as_known = train_fm.factors.user_events(test[USER])  # the FM's own count: never "newer"
    clip = lambda p: np.clip(p, 1, 5)  # noqa: E731
    return {"set": name, "protocol": protocol, "seed": seed,
            "w": train_fm.weights.round(3).tolist(), "mix": round(train_fm.mix, 3),
            "net": rmse(truth, clip(net)),
            "fm_refit": rmse(truth, clip(refit.fm(test))),
            "fm_train": rmse(truth, clip(train_fm.fm(test))),
            "refit": rmse(truth, clip(refit.apply(net, *ids, visible))),
            "train_fm": rmse(truth, clip(train_fm.apply(net, *ids, as_known))),
            "train_fm_rule": rmse(truth, clip(train_fm.apply(net, *ids, visible)))}


if __name__ == "__main__":
    print_runs(measure, sys.argv[1])
