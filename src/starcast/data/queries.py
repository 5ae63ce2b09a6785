"""Prediction queries: CSV or Parquet with columns user, item, ts (others are ignored)."""

from __future__ import annotations

from pathlib import Path

import polars as pl

from starcast.data.frames import TS_LIMIT, UNITS, time_unit
from starcast.data.schema import ITEM, QUERY_COLUMNS, TS, USER
from starcast.errors import DataError


def read_queries(path: str | Path) -> pl.DataFrame:
    """Every row must be usable: a query without an answer slot would lose a prediction."""
    path = Path(path)
    try:
        frame = (
            pl.read_parquet(path) if path.suffix == ".parquet"
            else pl.read_csv(path, infer_schema=False)
        )
    except (OSError, pl.exceptions.PolarsError) as err:
        raise DataError(f"cannot read queries: {err}", file=str(path)) from err
    missing = [c for c in QUERY_COLUMNS if c not in frame.columns]
    if missing:
        raise DataError(f"missing column(s) {missing}; found {frame.columns}", file=str(path))
    queries = frame.select(
        pl.col(USER).cast(pl.Utf8), pl.col(ITEM).cast(pl.Utf8),
        pl.col(TS).cast(pl.Float64, strict=False).alias("_ts"), pl.col(TS).alias("_raw"),
    )
    for column in (USER, ITEM):
        _reject(queries, path, pl.col(column).is_null(), column, "empty id")
    _reject(queries, path, pl.col("_ts").is_null() | pl.col("_ts").is_nan(), TS,
            "not a number")
    unit = time_unit(queries["_ts"])[1]
    if unit != "seconds":  # (event files are converted; a query must be exact or refused)
        raise DataError(f"ts looks like {unit} (median {queries['_ts'].median():.0f}); "
                        "give unix seconds (divide by "
                        f"{dict((n, d) for d, n in UNITS)[unit]:,})", file=str(path), field=TS)
    _reject(queries, path, (pl.col("_ts") < 0) | (pl.col("_ts") >= TS_LIMIT), TS,
            "outside unix seconds [0, 2^34)")
    return queries.select(USER, ITEM, pl.col("_ts").cast(pl.Int64).alias(TS))


def _reject(frame: pl.DataFrame, path: Path, bad: pl.Expr, field: str, reason: str) -> None:
    rows = frame.with_row_index("_row").filter(bad)
    if rows.height:
        first = rows.row(0, named=True)
        line = first["_row"] + (1 if path.suffix == ".parquet" else 2)  # CSV: header is line 1
        where = "row" if path.suffix == ".parquet" else "line"
        raise DataError(f"{reason} ({first['_raw'] if field == TS else ''!s}); "
                        f"{rows.height} such {where}(s)", file=str(path), line=line, field=field)
