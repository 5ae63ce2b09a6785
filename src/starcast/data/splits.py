"""Temporal split protocols: `loo` (leave-last-out per user) and `time` (global 80/10/10).

Both de-duplicate (user, item) first and are deterministic to the row; see DESIGN.md.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import polars as pl

from starcast.data.schema import EVENT_COLUMNS, ITEM, TS, USER, dedupe_events
from starcast.errors import DataError

Protocol = Literal["loo", "time"]
PROTOCOLS: tuple[str, ...] = ("loo", "time")


@dataclass
class Split:
    """Train, valid and test events, each sorted by (ts, user, item)."""

    train: pl.DataFrame
    valid: pl.DataFrame
    test: pl.DataFrame
    protocol: str
    duplicates_removed: int = 0

    def write(self, out_dir: str | Path) -> dict[str, Path]:
        """Write train.csv, valid.csv and test.csv (columns user,item,rating,ts)."""
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        paths = {}
        for name in ("train", "valid", "test"):
            paths[name] = out / f"{name}.csv"
            getattr(self, name).select(EVENT_COLUMNS).write_csv(paths[name])
        return paths


def split_events(events: pl.DataFrame, protocol: str) -> Split:
    """Split events by `protocol` ("loo" or "time")."""
    if protocol not in PROTOCOLS:
        raise DataError(f"unknown split protocol {protocol!r}; choose one of {PROTOCOLS}")
    unique, removed = dedupe_events(events)
    unique = unique.select(EVENT_COLUMNS)
    parts = _leave_last_out(unique) if protocol == "loo" else _global_time(unique)
    return Split(*(_chronological(p) for p in parts), protocol=protocol, duplicates_removed=removed)


def _chronological(frame: pl.DataFrame) -> pl.DataFrame:
    return frame.sort([TS, USER, ITEM])


def _leave_last_out(events: pl.DataFrame) -> tuple[pl.DataFrame, ...]:
    ranked = events.sort([USER, TS, ITEM]).with_columns(
        pl.len().over(USER).alias("_n"),
        pl.int_range(pl.len()).over(USER).alias("_pos"),
    )
    from_end = pl.col("_n") - pl.col("_pos")  # 1 for a user's last event
    eligible = pl.col("_n") >= 3
    test = ranked.filter(eligible & (from_end == 1))
    valid = ranked.filter(eligible & (from_end == 2))
    train = ranked.filter(~eligible | (from_end > 2))
    return tuple(p.drop("_n", "_pos") for p in (train, valid, test))


def _global_time(events: pl.DataFrame) -> tuple[pl.DataFrame, ...]:
    ordered = _chronological(events)
    n = ordered.height
    n_train, n_train_valid = (8 * n) // 10, (9 * n) // 10
    return (
        ordered.slice(0, n_train),
        ordered.slice(n_train, n_train_valid - n_train),
        ordered.slice(n_train_valid),
    )
