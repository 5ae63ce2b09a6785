"""Tables handed to the Python API: Polars, pandas or Arrow, checked and cast to the schema.

The readers check files row by row; a frame built in code gets the same schema here, with
starcast's own errors naming the missing or mistyped column instead of a library's.
"""

from __future__ import annotations

from typing import Any

import polars as pl

from starcast.data.schema import EVENT_SCHEMA, TS
from starcast.errors import DataError

TS_LIMIT = 2**34  # unix seconds up to the year 2514: what the history keys can order


def as_table(data: Any, columns: tuple[str, ...], what: str) -> pl.DataFrame:
    """`columns` of `data` (a Polars, pandas or Arrow table) cast to EVENT_SCHEMA."""
    frame = _polars(data, what)
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise DataError(f"{what} lack column(s) {missing}; they have {frame.columns}",
                        field=missing[0])
    cast = []
    for name in columns:
        try:
            cast.append(frame[name].cast(EVENT_SCHEMA[name], strict=True))
        except (pl.exceptions.InvalidOperationError, pl.exceptions.ComputeError) as err:
            raise DataError(f"{what}: column {name!r} of type {frame[name].dtype} cannot be "
                            f"{EVENT_SCHEMA[name]} ({str(err).splitlines()[0]})",
                            field=name) from None
        if cast[-1].null_count():
            raise DataError(f"{what}: {cast[-1].null_count()} missing value(s) in {name!r}",
                            field=name)
    out = pl.DataFrame(cast)
    if TS in columns:
        check_seconds(out[TS], what)
    return out


def check_seconds(ts: pl.Series, what: str) -> None:
    """Timestamps must be unix seconds: a millisecond column is named with its fix."""
    if ts.is_empty():
        return
    low, high = ts.min(), ts.max()
    if low < 0 or high >= TS_LIMIT:
        hint = " (milliseconds? divide by 1000)" if high >= TS_LIMIT else ""
        raise DataError(f"{what}: ts must be unix seconds in [0, 2^34), got {low} to {high}"
                        + hint, field=TS)


UNITS = ((1, "seconds"), (1_000, "milliseconds"), (1_000_000, "microseconds"))


def time_unit(ts: pl.Series) -> tuple[int, str]:
    """(divisor, name) of the unit a ts column is in, judged by its median: the first unit in
    which the median falls before the year 2514 (seconds for anything that does already)."""
    median = ts.median() if len(ts) else 0
    for divisor, name in UNITS:
        if median is None or median / divisor < TS_LIMIT:
            return divisor, name
    return UNITS[-1]


def _polars(data: Any, what: str) -> pl.DataFrame:
    if isinstance(data, pl.DataFrame):
        return data
    module = type(data).__module__.split(".")[0]
    if module == "pandas":
        return pl.from_pandas(data)
    if module == "pyarrow":
        return pl.from_arrow(data)  # type: ignore[return-value]
    raise DataError(f"{what}: expected a Polars, pandas or Arrow table, got "
                    f"{type(data).__name__}")
