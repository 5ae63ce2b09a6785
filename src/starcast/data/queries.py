"""Prediction queries: CSV or Parquet with columns user, item, ts (others are ignored)."""

from __future__ import annotations

from pathlib import Path

import polars as pl

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
    return queries.select(USER, ITEM, pl.col("_ts").cast(pl.Int64).alias(TS))


def _reject(frame: pl.DataFrame, path: Path, bad: pl.Expr, field: str, reason: str) -> None:
    rows = frame.with_row_index("_row").filter(bad)
    if rows.height:
        first = rows.row(0, named=True)
        line = first["_row"] + (1 if path.suffix == ".parquet" else 2)  # CSV: header is line 1
        where = "row" if path.suffix == ".parquet" else "line"
        raise DataError(f"{reason} ({first['_raw'] if field == TS else ''!s}); "
                        f"{rows.height} such {where}(s)", file=str(path), line=line, field=field)
