"""How much a customer's latest rating says about the next, beyond the mean of all of them.

    .venv/bin/python benchmarks/sequence_signal.py \
        All_Beauty_5,Digital_Music_5.partial,synthetic,synthetic-1,synthetic-2,synthetic-3,\
synthetic-4,synthetic-5,synthetic-100k > benchmarks/results/sequence-signal.md

A yardstick for what the recurrent part of the lstm can earn, not part of the package. Each
event's residual r - mu - b_item (ALS biases fitted on train) is regressed, by least squares
on the train events that have an earlier event of their customer, on

* `fold`: the shrunk mean of the customer's earlier residuals (sum / (n + 3)) -- what the
  untrained network's fold-in knows, order-free;
* `fold + last`: also the latest earlier residual minus that mean -- the simplest use of
  order, an AR(1) on the residuals.

Both fits predict the valid events; the table gives their valid RMSE, the paired difference of
squared errors (mean and standard error, over valid events) and its z (difference / SE). The
trained network is kept only where it beats the untrained one on valid by 3 SEs
(`lstm.significance`), so where the order's signal is itself under a few SEs on valid, no
network can earn its place there. Valid is read as the model reads it when selecting epochs:
from train only (`offline`: in the time protocol, the latest train event lies several events
back), and, for the time protocol, also `online` (each valid event with the customer's earlier
valid events visible, as the service runs).
"""

import sys

import numpy as np
import polars as pl
from accuracy import events_of, set_label

from starcast import split_events
from starcast.config import BiasConfig, LSTMConfig
from starcast.data.schema import ITEM, RATING, TS, USER
from starcast.features.vocab import Vocabulary
from starcast.models.bias import fit_biases

SHRINK = 3.0  # pseudo-events pulling the customer's mean residual toward 0
SIGNIFICANCE = LSTMConfig().significance  # the lstm's selection threshold, in SEs


def residuals(train: pl.DataFrame, events: pl.DataFrame) -> pl.DataFrame:
    """`events` with `res` = rating - mu - item bias, the biases fitted on train."""
    users, items = Vocabulary.build(train[USER]), Vocabulary.build(train[ITEM])
    mu, _, b_item = fit_biases(users.encode(train[USER]), items.encode(train[ITEM]),
                               train[RATING].to_numpy(), len(users), len(items), BiasConfig())
    bias = b_item[items.encode(events[ITEM])]
    return events.with_columns(pl.Series("res", events[RATING].to_numpy() - mu - bias))


def with_prior(events: pl.DataFrame) -> pl.DataFrame:
    """Per event, from the customer's earlier events: n, the shrunk mean, the latest."""
    ordered = events.sort([USER, TS, ITEM])
    earlier = pl.col("res").cum_sum().over(USER) - pl.col("res")
    n = pl.int_range(pl.len()).over(USER)
    return ordered.with_columns(
        n.alias("n"), (earlier / (n + SHRINK)).alias("fold"),
        pl.col("res").shift(1).over(USER).alias("last"))


def design(frame: pl.DataFrame, order: bool) -> np.ndarray:
    fold = frame["fold"].to_numpy()
    columns = [np.ones(len(fold)), fold]
    if order:
        columns.append(frame["last"].to_numpy() - fold)
    return np.column_stack(columns)


def valid_rows(train: pl.DataFrame, valid: pl.DataFrame, online: bool) -> pl.DataFrame:
    """Valid events with their prior: everything earlier (online) or train only (offline)."""
    if online:
        both = with_prior(pl.concat([train.with_columns(pl.lit(False).alias("is_valid")),
                                     valid.with_columns(pl.lit(True).alias("is_valid"))]))
        return both.filter(pl.col("is_valid") & (pl.col("n") > 0))
    ends = with_prior(train).group_by(USER).agg(
        (pl.col("res").sum() / (pl.len() + SHRINK)).alias("fold"),
        pl.col("res").last().alias("last"), pl.len().alias("n"))
    return valid.join(ends, on=USER, how="inner")


def measure(train: pl.DataFrame, valid: pl.DataFrame, online: bool) -> dict:
    train, valid = residuals(train, train), residuals(train, valid)
    fitting = with_prior(train).filter(pl.col("n") > 0)
    rows = valid_rows(train, valid, online)
    betas = [np.linalg.lstsq(design(fitting, order), fitting["res"].to_numpy(), rcond=None)[0]
             for order in (False, True)]
    errors = [(rows["res"].to_numpy() - design(rows, order) @ beta) ** 2
              for order, beta in zip((False, True), betas, strict=True)]
    coefficient = float(betas[1][-1])
    gain = errors[1] - errors[0]
    se = float(gain.std(ddof=1) / np.sqrt(len(gain)))
    return {"valid": len(gain), "last_coef": coefficient,
            "fold": float(np.sqrt(errors[0].mean())), "fold_last": float(np.sqrt(errors[1].mean())),
            "gain": float(gain.mean()), "se": se, "z": float(gain.mean() / se)}


def main() -> None:
    print("| data | protocol | valid read | valid events | AR coef (train) | RMSE fold | "
          "RMSE fold + last | MSE change (SE) | z |")
    print("|---|---|---|---:|---:|---:|---:|---:|---:|")
    for name in sys.argv[1].split(","):
        events = events_of(name)
        for protocol in ("loo", "time"):
            split = split_events(events, protocol)
            for online in (False, True) if protocol == "time" else (False,):
                m = measure(split.train, split.valid, online)
                print(f"| {set_label(name).split('.')[0]} | {protocol} | "
                      f"{'online' if online else 'offline'} | {m['valid']} | "
                      f"{m['last_coef']:.3f} | {m['fold']:.4f} | {m['fold_last']:.4f} | "
                      f"{m['gain']:+.4f} ({m['se']:.4f}) | {m['z']:+.1f} |", flush=True)
    print(f"\nz below -{SIGNIFICANCE:.0f}: valid can show the order's signal at the lstm's "
          "selection threshold.")


if __name__ == "__main__":
    main()
