"""Test RMSE and macro-MAE of every model, and what each part of the default adds.

    .venv/bin/python benchmarks/accuracy.py run --seed 0      # one seed (run seeds in parallel)
    .venv/bin/python benchmarks/accuracy.py run --seed 1 --only lstm,lstm-no-fm
    .venv/bin/python benchmarks/accuracy.py report            # tables from every run so far
    .venv/bin/python benchmarks/accuracy.py report --name lstm-vs-transformer   # another file
    .venv/bin/python benchmarks/accuracy.py run --seed 0 --sets synthetic-1,synthetic-2 \
        --only lstm-no-fm,lstm-no-fm-no-recurrent,lstm-no-fm-untrained   # other synthetic draws
    .venv/bin/python benchmarks/accuracy.py run --seed 0 --sets path/to/ml-100k.inter  # a file

Data: the shared Amazon sets and a synthetic set (customers with autocorrelated ratings), both
split protocols. Each starcast model fits on train with its defaults (early stopping on valid,
refit on train + valid), then predicts every test event twice:

* online: history = all events under the visibility rule (only events with ts <= the query's
  ts, never the query's own pair), as the service and `starcast predict` with all events run;
* offline: history = train + valid, nothing from the test period: the protocol of the
  reference numbers, and of `starcast predict --history train+valid`.

The peers (the Bayesian FM in regression and ordered probit) fit on train + valid and are
offline by construction. The ablations of the default `lstm`: `lstm-no-fm` (the network alone),
`lstm-no-recurrent` (the head never sees the LSTM state), `lstm-untrained` (no epoch: biases,
fold-in and the FM); and the network alone, `lstm-no-fm`, against its own two ablations
(`lstm-no-fm-no-recurrent`, `lstm-no-fm-untrained`): what the recurrent state adds with nothing
else beside it. `synthetic-K` is the synthetic set drawn with data seed K (`synthetic` is K = 0):
its valid set has one event per customer, so one draw says little about a 0.02 RMSE effect;
`synthetic-100k` is drawn with four times the customers (100,000 events), valid four times as
large.
`transformer` is the same model with band self-attention over the latest events as its encoder
(and `transformer-no-recurrent` its ablation). `report` gives mean test
RMSE over seeds and, for each pair in COMPARED (the default against each ablation, peer and the
transformer; the transformer against its ablation), the paired bootstrap 95% interval of the
RMSE difference (mean over seeds, events resampled), in benchmarks/results/accuracy.{json,md}.
Predictions are cached in benchmarks/results/accuracy-runs/ (not committed); `report` merges
what is cached into the recorded tables, so a run of a few models on a fresh checkout
replaces their rows and leaves the others as recorded.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import polars as pl

from starcast import Forecaster, read_events, split_events
from starcast.config import StarcastConfig
from starcast.data.schema import RatingScale
from starcast.data.splits import PROTOCOLS
from starcast.data.synth import SynthConfig, generate
from starcast.evaluation import peers
from starcast.evaluation.metrics import (
    macro_mae,
    negative_log_likelihood,
    paired_bootstrap_interval,
    ranked_probability_score,
    summary,
)
from starcast.models.stars import StarCosts, star_shares

DATA = Path(
    os.environ.get("STARCAST_DATA_DIR", Path(__file__).resolve().parents[2] / "shared/data")
)
SETS = ("All_Beauty_5", "Digital_Music_5.partial", "synthetic")
SYNTHETIC = SynthConfig(users=1_000, items=300, events=30_000, seed=0)
# four times the customers, so four times the valid events: on `synthetic` valid is too small
# to show the autocorrelation (benchmarks/sequence_signal.py)
SYNTHETIC_LARGE = ("synthetic-100k", SynthConfig(users=4_000, items=600, events=100_000, seed=0))
TO_BEAT = {  # the best reference of each setting (test RMSE, offline), from the accuracy issue
    ("All_Beauty_5", "loo"): 0.3674,
    ("All_Beauty_5", "time"): 1.9364,
    ("Digital_Music_5.partial", "loo"): 0.7026,
    ("Digital_Music_5.partial", "time"): 0.7776,
}
_DEFAULT = StarcastConfig()
VARIANTS = {  # label -> run configuration
    "bias": replace(_DEFAULT, model="bias"),
    "mf": replace(_DEFAULT, model="mf"),
    "lstm": _DEFAULT,
    "lstm-no-fm": replace(_DEFAULT, lstm=replace(_DEFAULT.lstm, factors=False)),
    "lstm-no-recurrent": replace(_DEFAULT, lstm=replace(_DEFAULT.lstm, recurrent=False)),
    "lstm-untrained": replace(_DEFAULT, lstm=replace(_DEFAULT.lstm, epochs=0)),
    "lstm-no-fm-no-recurrent": replace(
        _DEFAULT, lstm=replace(_DEFAULT.lstm, factors=False, recurrent=False)),
    "lstm-no-fm-untrained": replace(_DEFAULT, lstm=replace(_DEFAULT.lstm, factors=False,
                                                           epochs=0)),
    "transformer": replace(_DEFAULT, model="transformer"),
    "transformer-no-recurrent": replace(
        _DEFAULT, model="transformer",
        transformer=replace(_DEFAULT.transformer, recurrent=False)),
}
PEERS = peers.BAYESIAN_FM
COMPARED = (  # (model, against): the default against each, the transformer against its ablation
    *(("lstm", label) for label in ("bias", "lstm-no-fm", "lstm-no-recurrent", "lstm-untrained",
                                    "transformer", *PEERS)),
    ("transformer", "transformer-no-recurrent"),
    ("lstm-no-fm", "lstm-no-fm-no-recurrent"),
    ("lstm-no-fm", "lstm-no-fm-untrained"),
)
PROBABILITY_SCORES = ((negative_log_likelihood, "nll"), (ranked_probability_score, "rps"))
RESULTS = Path(__file__).parent / "results"
RUNS = RESULTS / "accuracy-runs"


def events_of(name: str) -> pl.DataFrame:
    if name == SYNTHETIC_LARGE[0]:
        return generate(SYNTHETIC_LARGE[1]).events
    if name.startswith("synthetic"):  # synthetic-K: data seed K
        return generate(replace(SYNTHETIC, seed=int(name.partition("-")[2] or 0))).events
    if Path(name).is_file():  # a review file of one's own, in any format starcast reads
        return read_events(name).events
    return read_events(DATA / "amazon" / f"{name}.json.gz").events


def set_label(name: str) -> str:
    """The name a set's runs and rows go by: a file's name up to its first dot."""
    return Path(name).name.partition(".")[0] if Path(name).is_file() else name


def run(seed: int, only: list[str] | None, sets: list[str] | None = None,
        protocols: list[str] | None = None) -> None:
    RUNS.mkdir(parents=True, exist_ok=True)
    for name in sets or SETS:
        events, set_name = events_of(name), set_label(name)
        for protocol in protocols or PROTOCOLS:
            split = split_events(events, protocol)
            for label in only or [*VARIANTS, *PEERS]:
                row = _measure(label, split, seed)
                np.savez(RUNS / f"{set_name}.{protocol}.{label}.{seed}.npz", **row)
                print(set_name, protocol, label, seed, {k: row[k] for k in ("offline_rmse",
                      "online_rmse", "fit_seconds")}, flush=True)


def _measure(label: str, split, seed: int) -> dict:
    truth = split.test["rating"].to_numpy()
    known = pl.concat([split.train, split.valid])
    start = time.perf_counter()
    scale = RatingScale()
    shares = star_shares(known["rating"].to_numpy(), scale.low, scale.stars)
    if label in PEERS:
        peer = peers.fit_predict(label, known, split.test, scale, seed)
        probs = peer.probabilities
        out = {"offline": peer.mean, "online": peer.mean, "valid_rmse": np.nan,
               "best_epoch": -1}
        if probs is not None:  # read the balanced way with costs from train + valid
            out["offline_balanced"] = StarCosts.inverse_share(shares).balanced(probs, scale.low)
            out |= {"online_balanced": out["offline_balanced"], "online_probs": probs}
    else:
        model = Forecaster(config=VARIANTS[label], seed=seed).fit(split.train, split.valid)
        log = model.training_log
        chosen = [e for e in log["epochs"] if e["epoch"] == log.get("best_epoch")]
        stars = [f"p{k + 1}" for k in range(scale.stars)]
        offline = model.predict(known, split.test)
        online = model.predict(pl.concat([known, split.test]), split.test)
        probs = offline.select(stars).to_numpy()
        out = {
            "offline": offline["prediction"].to_numpy(),
            "offline_balanced": offline["balanced"].to_numpy(),
            "online": online["prediction"].to_numpy(),
            "online_balanced": online["balanced"].to_numpy(),
            "online_probs": online.select(stars).to_numpy(),
            "valid_rmse": chosen[0]["valid_rmse"] if chosen else np.nan,
            "best_epoch": log.get("best_epoch") if log.get("best_epoch") is not None else -1,
            # valid as the model fitted on train predicts it (network and FMs of train alone)
            "valid": model.model_.valid_prediction_,
            "valid_truth": split.valid["rating"].to_numpy(),
        }
    if probs is not None:
        out |= {"offline_probs": probs, "shares": shares}
    out["fit_seconds"] = time.perf_counter() - start
    for history in ("offline", "online"):
        out[f"{history}_rmse"] = summary(truth, out[history])["rmse"]
    return out | {"truth": truth}


def report(out: str = "accuracy") -> None:
    """Tables from the cached runs, merged into the recorded {out}.json: a fresh checkout
    caches only what it ran, so a recorded row stays unless its (data, protocol, model) was
    rerun, and a recorded comparison stays unless either side was."""
    runs: dict[tuple, dict[int, dict]] = {}
    for path in sorted(RUNS.glob("*.npz")):
        name, protocol, label, seed = path.stem.rsplit(".", 3)
        runs.setdefault((name, protocol, label), {})[int(seed)] = dict(np.load(path))
    recorded_path = RESULTS / f"{out}.json"
    recorded = (json.loads(recorded_path.read_text()) if recorded_path.exists()
                else {"rows": [], "comparisons": []})
    rows = [_row(key, by_seed) for key, by_seed in runs.items()]
    rows += [r for r in recorded["rows"] if (r["data"], r["protocol"], r["model"]) not in runs]
    comparisons = [c for key in {k[:2] for k in runs} for c in _comparisons(key, runs)]
    comparisons += _kept_comparisons(recorded["comparisons"], runs)
    names = {r["data"] for r in rows}
    order = {s: i for i, s in enumerate(SETS)} | {
        s: len(SETS) + i for i, s in enumerate(sorted(names - set(SETS)))}
    rows.sort(key=lambda r: (order[r["data"]], r["protocol"], _rank(r["model"])))
    comparisons.sort(key=lambda r: (order[r["data"]], r["protocol"], _rank(r["model"]),
                                    _rank(r["against"])))
    recorded_path.write_text(json.dumps({"rows": rows, "comparisons": comparisons}, indent=2))
    (RESULTS / f"{out}.md").write_text(markdown(rows, comparisons))


def _kept_comparisons(recorded: list[dict], runs: dict) -> list[dict]:
    """The recorded comparisons neither of whose sides was rerun; one with a single side
    rerun is stale and dropped, with a warning (rerun both sides to compare them again)."""
    kept = []
    for c in recorded:
        rerun = [(c["data"], c["protocol"], label) in runs for label in (c["model"], c["against"])]
        if not any(rerun):
            kept.append(c)
        elif not all(rerun):
            print(f"dropped the recorded comparison {c['model']} against {c['against']} on "
                  f"{c['data']} {c['protocol']}: only one side was rerun")
    return kept


def _rank(label: str) -> int:
    labels = [*VARIANTS, *PEERS]
    return labels.index(label) if label in labels else len(labels)


def _row(key: tuple, by_seed: dict[int, dict]) -> dict:
    name, protocol, label = key
    runs = list(by_seed.values())
    truth = runs[0]["truth"]
    row = {"data": name, "protocol": protocol, "model": label, "seeds": sorted(by_seed),
           "to_beat": TO_BEAT.get((name, protocol)),
           "fit_seconds": float(np.mean([r["fit_seconds"] for r in runs])),
           "valid_rmse": float(np.mean([r["valid_rmse"] for r in runs])),
           "best_epochs": [int(r["best_epoch"]) for r in runs]}
    for history in ("offline", "online"):
        scores = [summary(truth, r[history]) for r in runs]
        row[f"{history}_rmse"] = float(np.mean([s["rmse"] for s in scores]))
        row[f"{history}_rmse_spread"] = float(np.std([s["rmse"] for s in scores]))
        row[f"{history}_macro_mae"] = float(np.mean([s["macro_mae"] for s in scores]))
    for history in ("offline", "online"):  # online: runs from before it hold none (nan)
        row[f"{history}_balanced_macro_mae"] = _mean(
            runs, f"{history}_balanced", lambda r, h=history: macro_mae(truth, r[f"{h}_balanced"]))
        for score, name in PROBABILITY_SCORES:
            row[f"{history}_{name}"] = _mean(runs, f"{history}_probs", lambda r, f=score,
                                             h=history: f(truth, r[f"{h}_probs"], 1))
    for score, name in PROBABILITY_SCORES:
        row[f"shares_{name}"] = _mean(runs, "shares", lambda r, f=score: f(
            truth, np.tile(r["shares"], (len(truth), 1)), 1))
    return row


def _mean(runs: list[dict], needs: str, value) -> float:
    """Mean of value(run) over the runs holding `needs` (nan when none does)."""
    values = [value(r) for r in runs if needs in r]
    return float(np.mean(values)) if values else float("nan")


def _comparisons(key: tuple, runs: dict) -> list[dict]:
    """Each compared pair on the seeds both ran: paired intervals."""
    out = []
    for model, label in COMPARED:
        base, other = runs.get((*key, model)), runs.get((*key, label))
        if base is None or other is None:
            continue
        seeds = sorted(set(base) & set(other))
        truth = base[seeds[0]]["truth"]
        entry = {"data": key[0], "protocol": key[1], "model": model, "against": label,
                 "seeds": seeds}
        for history in ("offline", "online", "valid"):
            if not all(history in r[s] for r in (base, other) for s in seeds):
                continue  # (valid: the peers fit on train + valid; runs from before it)
            answers = base[seeds[0]]["valid_truth"] if history == "valid" else truth
            mine = np.stack([base[s][history] for s in seeds])
            theirs = np.stack([other[s][history] for s in seeds])
            diffs = [summary(answers, m)["rmse"] - summary(answers, t)["rmse"]
                     for m, t in zip(mine, theirs, strict=True)]
            entry[f"{history}_diff"] = float(np.mean(diffs))
            entry[f"{history}_ci95"] = paired_bootstrap_interval(answers, mine, theirs)
        if all("offline_balanced" in r[s] for r in (base, other) for s in seeds):
            mine, theirs = (np.stack([r[s]["offline_balanced"] for s in seeds])
                            for r in (base, other))
            entry["balanced_diff"] = float(np.mean([macro_mae(truth, m) - macro_mae(truth, t)
                                                    for m, t in zip(mine, theirs, strict=True)]))
            entry["balanced_ci95"] = paired_bootstrap_interval(truth, mine, theirs, macro_mae)
        out.append(entry)
    return out


def markdown(rows: list[dict], comparisons: list[dict]) -> str:
    lines = [
        "| data | protocol | model | offline RMSE (± seeds) | online RMSE | to beat (offline) "
        "| offline macro-MAE | balanced macro-MAE offline / online | NLL offline / online (shares) "
        "| RPS offline / online (shares) "
        "| valid RMSE (network) | best epochs | fit s |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|",
    ]
    for r in rows:
        beat = "" if r["to_beat"] is None else f"{r['to_beat']:.4f}"
        lines.append(
            f"| {r['data'].split('.')[0]} | {r['protocol']} | {r['model']} | "
            f"{r['offline_rmse']:.4f} ±{r['offline_rmse_spread']:.4f} | {r['online_rmse']:.4f} | "
            f"{beat} | {r['offline_macro_mae']:.4f} | {_pair(r, 'balanced_macro_mae')} | "
            f"{_pair(r, 'nll')} ({r['shares_nll']:.4f}) | "
            f"{_pair(r, 'rps')} ({r['shares_rps']:.4f}) | {r['valid_rmse']:.4f} | "
            f"{r['best_epochs']} | {r['fit_seconds']:.1f} |")
    lines += [
        "", "model minus the one it is against, test RMSE (and the balanced reading's macro-MAE; "
        "and valid RMSE, valid predicted by the models fitted on train, from train alone), "
        "mean over seeds, paired bootstrap 95% interval (negative: the model is better):", "",
        "| data | protocol | model | against | seeds | offline diff [95%] | online diff [95%] "
        "| balanced macro-MAE diff [95%] | valid diff [95%] |",
        "|---|---|---|---|---|---:|---:|---:|---:|",
    ]
    for c in comparisons:
        cells = [f"{c[f'{h}_diff']:+.4f} [{c[f'{h}_ci95'][0]:+.4f}, {c[f'{h}_ci95'][1]:+.4f}]"
                 if f"{h}_diff" in c else "" for h in ("offline", "online", "balanced", "valid")]
        lines.append(f"| {c['data'].split('.')[0]} | {c['protocol']} | {c['model']} | "
                     f"{c['against']} | "
                     f"{c['seeds']} | {' | '.join(cells)} |")
    return "\n".join(lines) + "\n"


def _pair(row: dict, score: str) -> str:
    """offline / online; a row recorded before the online readings gives the offline alone."""
    online = row.get(f"online_{score}", float("nan"))
    offline = f"{row[f'offline_{score}']:.4f}"
    return offline if np.isnan(online) else f"{offline} / {online:.4f}"


def main() -> None:
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="command", required=True)
    runner = sub.add_parser("run")
    runner.add_argument("--seed", type=int, default=0)
    runner.add_argument("--only", default=None, help="comma-separated labels")
    runner.add_argument("--sets", default=None, help="comma-separated data sets (default: "
                        f"{','.join(SETS)}; synthetic-K: the synthetic set of data seed K; "
                        "or the path of a review file)")
    runner.add_argument("--protocols", default=None, help="comma-separated (default: loo,time)")
    for command in (runner, sub.add_parser("report")):
        command.add_argument("--name", default="accuracy",
                             help="the tables' file name in benchmarks/results/")
    args = parser.parse_args()
    unknown = set((getattr(args, "protocols", None) or "loo").split(",")) - set(PROTOCOLS)
    if unknown:
        parser.error(f"--protocols: unknown {sorted(unknown)}; choose from {list(PROTOCOLS)}")
    if args.command == "run":
        run(args.seed, *(None if value is None else value.split(",")
                         for value in (args.only, args.sets, args.protocols)))
    report(args.name)


if __name__ == "__main__":
    main()
