"""The regression FM, the ordered-probit FM, or a mix of the two beside the network?

    .venv/bin/python benchmarks/fm_mix.py Digital_Music_5.partial loo \
        >> benchmarks/results/fm-mix.log

An experiment behind `fm.probit` (the FMs beside the default network), not part of the package.
For seeds 0 and 1 the default lstm is fitted as usual (its train-only network's valid
predictions captured as in benchmarks/fm_kind.py), and myFM fits, in the accuracy issue's
features, the regression FM (6 chains of 50, the last 25 of each averaged) and the ordered
probit (one chain of 300, the last 250), on train (-> valid) and on train + valid (-> test),
FM seed 42 + seed. The probit's expected star is read as the package serves it: Phi of the
mean (score - cutpoint) over sqrt(1 + its variance across draws, averaged over the fitting
rows), here without the package's truncated SVD. For each FM answer (regression, probit, their
plain average `half`, and `mix`: the regression's share fitted on valid as models/blend.py
fits weights), the network blend's weights are fitted on valid as models/blend.py does; test
RMSE of the FM alone (`_fm`) and of the blend (`_blend`). `default` is the package's default.
"""

import json
import sys

import numpy as np
import polars as pl
from accuracy import events_of, set_label
from fm_kind import apply, captured, fitted_default, rmse, weights
from scipy.special import ndtr

from starcast.data.schema import RATING
from starcast.models import bayesian_fm as bfm
from starcast.models.blend import _weight


def fm(known: pl.DataFrame, queries: pl.DataFrame, seed: int, probit: bool) -> np.ndarray:
    design = bfm._Design(known)
    X, rel = design.rows(known)
    Xq, relq = design.rows(queries)
    y = known[RATING].to_numpy().astype(float)
    chains, iterations, kept = (1, 300, 250) if probit else (6, 50, 25)
    means, steps, spread = [], [], []
    for c in range(chains):
        kind = bfm._myfm().MyFMOrderedProbit if probit else bfm._myfm().MyFMRegressor
        with bfm._quiet():
            model = kind(rank=bfm.RANK, random_seed=seed + bfm.CHAIN_SEEDS * c).fit(
                X, np.rint(y - 1).astype(np.int64) if probit else y, X_rel=rel, n_iter=iterations,
                n_kept_samples=kept, grouping=design.grouping)
        if not probit:
            means.append(model.predict(Xq, relq))
            continue
        for draw in model.predictor_.samples:
            cut = np.asarray(draw.cutpoints[0])
            steps.append(draw.predict_score(Xq, relq)[:, None] - cut)
            spread.append(draw.predict_score(X, rel)[:, None] - cut)
    if not probit:
        return np.clip(np.mean(means, axis=0), 1, 5)
    s2 = np.array(spread).var(axis=0).mean(axis=0)
    return 1 + ndtr(np.mean(steps, axis=0) / np.sqrt(1 + s2)).sum(axis=1)


def measure(events: pl.DataFrame, name: str, protocol: str, seed: int) -> dict:
    train, valid, test, known, test_net, default, valid_where, test_where = fitted_default(
        events, protocol, seed)
    tv, tt = valid[RATING].to_numpy(), test[RATING].to_numpy()
    reg = fm(train, valid, 42 + seed, False), fm(known, test, 42 + seed, False)
    pro = fm(train, valid, 42 + seed, True), fm(known, test, 42 + seed, True)
    lam = _weight(reg[0] - pro[0], tv - pro[0])
    row = {"set": set_label(name), "protocol": protocol, "seed": seed,
           "default": rmse(tt, default), "net": rmse(tt, test_net), "lam": lam}
    answers = {"reg": reg, "probit": pro,
               "half": ((reg[0] + pro[0]) / 2, (reg[1] + pro[1]) / 2),
               "mix": (lam * reg[0] + (1 - lam) * pro[0], lam * reg[1] + (1 - lam) * pro[1])}
    for label, (on_valid, on_test) in answers.items():
        w = weights(captured["valid_net"], on_valid, tv, *valid_where)
        row |= {f"{label}_fm": rmse(tt, on_test), f"{label}_w": w.round(3).tolist(),
                f"{label}_blend": rmse(tt, apply(test_net, on_test, w, *test_where))}
    return row


if __name__ == "__main__":
    name, protocol = sys.argv[1], sys.argv[2]
    events = events_of(name)
    for seed in (0, 1):
        row = measure(events, name, protocol, seed)
        print(json.dumps({k: round(v, 4) if isinstance(v, float) else v for k, v in row.items()}),
              flush=True)
