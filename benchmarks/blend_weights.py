"""Do the blend's weights, fitted on valid, carry over to test?

    .venv/bin/python benchmarks/blend_weights.py Digital_Music_5.partial,All_Beauty_5 \
        > benchmarks/results/blend-weights.log

An experiment, not part of the package. For each set, protocol and seed 0 and 1 the default
lstm is fitted as usual; the train-round FMs' valid answers and the network's (as the blend
saw them, captured around SequenceModel._valid_blend, a private method) and the served FMs'
and network's test answers are read back. For the users the FM was fitted on, it prints the
weight the default fitted on valid (`w`: [new users, known users]), the least-squares weight
of the FM against the network on valid and on test (`ls_valid`, `ls_test`: what each set
alone would ask for), the regression FM's share likewise (`mix`, `mix_ls_test`), the number
of queries, and RMSE of the network, the FM mix and the default (`FactorBlend.apply`, before
the model's clip to the rating scale) on valid and test.
"""

import sys

import numpy as np
import polars as pl
from accuracy import set_label
from fm_kind import counts, print_runs, rmse

from starcast import Forecaster, split_events
from starcast.data.schema import ITEM, RATING, TS, USER
from starcast.features.history import visible_counts
from starcast.models import sequence

captured: dict = {}
_valid_blend = sequence.SequenceModel._valid_blend


def _capturing(self, train: pl.DataFrame, valid: pl.DataFrame, blend):
    fitted = _valid_blend(self, train, valid, blend)
    captured["net"] = np.asarray(self._network_estimate(pl.concat([train, valid]), valid).mean)
    captured["blend"] = fitted
    return fitted


sequence.SequenceModel._valid_blend = _capturing


def least_squares(base: np.ndarray, other: np.ndarray, truth: np.ndarray) -> float:
    """w minimising |truth - base - w (other - base)|^2."""
    gap = other - base
    return float(gap @ (truth - base) / (gap @ gap))


def answers(blend, net: np.ndarray, queries: pl.DataFrame, fitted_on: np.ndarray,
            visible: np.ndarray) -> dict:
    ids = (queries[USER], queries[ITEM], queries[TS].to_numpy())
    truth = queries[RATING].to_numpy()
    known = (visible <= fitted_on) & (fitted_on > 0)
    fm, reg, probit = blend.fm(queries), blend.factors.predict(*ids), blend.probit.predict(*ids)
    return {"n": len(truth), "n_known": int(known.sum()),
            "ls": least_squares(net[known], fm[known], truth[known]),
            "mix_ls": least_squares(probit, reg, truth),
            "net": rmse(truth, net), "fm": rmse(truth, fm),
            "default": rmse(truth, blend.apply(net, *ids[:2], ids[2], visible))}


def measure(events: pl.DataFrame, name: str, protocol: str, seed: int) -> dict:
    split = split_events(events, protocol)
    train, valid, test = split.train, split.valid, split.test
    known = pl.concat([train, valid])
    model = Forecaster(seed=seed).fit(train, valid).model_
    on_valid = answers(captured["blend"], captured["net"], valid, counts(train, valid[USER]),
                       visible_counts(known, valid))
    on_test = answers(model.blend_, np.asarray(model._network_estimate(known, test).mean), test,
                      counts(known, test[USER]), visible_counts(known, test))
    row = {"set": set_label(name), "protocol": protocol, "seed": seed,
           "w": model.blend_.weights.round(3).tolist(), "mix": round(model.blend_.mix, 3)}
    for label, values in (("valid", on_valid), ("test", on_test)):
        row |= {f"{key}_{label}": value for key, value in values.items()}
    return row


if __name__ == "__main__":
    print_runs(measure, sys.argv[1])
