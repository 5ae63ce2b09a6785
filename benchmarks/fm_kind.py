"""Would blending with the ordered-probit FM (or letting valid choose the FM kind) help?

    .venv/bin/python benchmarks/fm_kind.py Digital_Music_5.partial,All_Beauty_5,synthetic \
        > benchmarks/results/fm-kind.log

An experiment, not part of the package. The default lstm is fitted as usual; it wraps
SequenceModel._valid_blend (a private method) to capture the train-only network's valid
predictions as the blend sees them, and reads the final network's test predictions. Both FM
kinds are fitted as peers (myFM's own predictions, not the FactorBase the default serves):
train -> valid, train + valid -> test, seed 42 + seed. Weights as models/blend.py fits them.
"""

import json
import sys
from collections.abc import Callable

import numpy as np
import polars as pl
from accuracy import events_of, set_label

from starcast import Forecaster, split_events
from starcast.data.schema import RATING, USER, RatingScale
from starcast.evaluation import peers
from starcast.features.history import visible_counts
from starcast.models import sequence
from starcast.models.blend import MIN_GROUP, NO_VALID, _weight

KINDS = {"reg": "bayesian-fm", "probit": "bayesian-fm-probit"}
captured: dict[str, np.ndarray] = {}
_valid_blend = sequence.SequenceModel._valid_blend


def _capturing(self, train: pl.DataFrame, valid: pl.DataFrame, *blend):
    history = pl.concat([train, valid])
    captured["valid_net"] = np.asarray(self._network_estimate(history, valid).mean).copy()
    return _valid_blend(self, train, valid, *blend)


sequence.SequenceModel._valid_blend = _capturing


def counts(fit_on: pl.DataFrame, users: pl.Series) -> np.ndarray:
    c = fit_on.group_by(USER).len()
    table = dict(zip(c[USER].to_list(), c["len"].to_list(), strict=True))
    return np.array([table.get(u, 0) for u in users.to_list()], float)


def weights(net, fm, truth, visible, fitted_on) -> np.ndarray:
    gap, residual = fm - net, truth - net
    usable = visible <= fitted_on

    def fitted(rows, fallback):
        return _weight(gap[rows], residual[rows]) if rows.sum() >= MIN_GROUP else fallback

    pooled = fitted(usable, NO_VALID)
    return np.array([fitted(usable & (fitted_on == 0), pooled),
                     fitted(usable & (fitted_on > 0), pooled)])


def apply(net, fm, w, visible, fitted_on) -> np.ndarray:
    return net + np.where(visible > fitted_on, 0.0, w[(fitted_on > 0).astype(int)]) * (fm - net)


def rmse(truth: np.ndarray, pred: np.ndarray) -> float:
    return float(np.sqrt(np.mean((truth - pred) ** 2)))


def fitted_default(events: pl.DataFrame, protocol: str, seed: int) -> tuple:
    """The default lstm fitted on the split: (train, valid, test, known, the final network's
    test predictions, the default's, and for valid and test: (visible, fitted-on) counts)."""
    split = split_events(events, protocol)
    train, valid, test = split.train, split.valid, split.test
    known = pl.concat([train, valid])
    model = Forecaster(seed=seed).fit(train, valid)
    test_net = np.asarray(model.model_._network_estimate(known, test).mean)
    default = model.predict(known, test)["prediction"].to_numpy()
    valid_where = visible_counts(known, valid), counts(train, valid[USER])
    test_where = visible_counts(known, test), counts(known, test[USER])
    return train, valid, test, known, test_net, default, valid_where, test_where


def measure(events: pl.DataFrame, name: str, protocol: str, seed: int) -> dict:
    train, valid, test, known, test_net, default, valid_where, test_where = fitted_default(
        events, protocol, seed)
    tv, tt = valid[RATING].to_numpy(), test[RATING].to_numpy()
    row = {"set": set_label(name), "protocol": protocol, "seed": seed,
           "default": rmse(tt, default), "net": rmse(tt, test_net)}
    blended = {}
    for short, kind in KINDS.items():
        fm_valid = peers.fit_predict(kind, train, valid, RatingScale(), seed).mean
        fm_test = peers.fit_predict(kind, known, test, RatingScale(), seed).mean
        w = weights(captured["valid_net"], fm_valid, tv, *valid_where)
        on_valid = rmse(tv, apply(captured["valid_net"], fm_valid, w, *valid_where))
        blended[short] = (on_valid, rmse(tt, apply(test_net, fm_test, w, *test_where)))
        row |= {f"{short}_alone": rmse(tt, fm_test), f"{short}_blend": blended[short][1],
                f"{short}_w": w.round(3).tolist(), f"valid_{short}": on_valid}
    chosen = min(blended, key=lambda k: blended[k][0])
    return row | {"chosen": chosen, "chosen_test": blended[chosen][1]}


def print_runs(measure: Callable[[pl.DataFrame, str, str, int], dict], names: str) -> None:
    """One line of `measure(events, name, protocol, seed)` for each comma-separated set name,
    both protocols, seeds 0 and 1."""
    for name in names.split(","):
        events = events_of(name)
        for protocol in ("loo", "time"):
            for seed in (0, 1):
                row = measure(events, name, protocol, seed)
                print(json.dumps({k: round(v, 4) if isinstance(v, float) else v
                                  for k, v in row.items()}), flush=True)


if __name__ == "__main__":
    print_runs(measure, sys.argv[1])
