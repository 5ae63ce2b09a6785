"""Coercing raw columns to canonical types and finding the rows that cannot be used.

Every reader, whatever the format, ends in `validate_events` so that the same input value
is judged the same way whether it arrived as JSON, CSV or Parquet, and whether the fast
or the per-line path parsed it.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple

import polars as pl

from starcast.data.report import ReadReport
from starcast.data.schema import EVENT_SCHEMA, ITEM, LINE, RATING, TS, USER, RatingScale

# The fixed set of reasons a row is skipped for.
MALFORMED = "malformed line"
MISSING = "missing field"
BAD_RATING = "bad rating"
OUT_OF_SCALE = "rating out of scale"
BAD_TIMESTAMP = "bad timestamp"
REASONS: tuple[str, ...] = (MALFORMED, MISSING, BAD_RATING, OUT_OF_SCALE, BAD_TIMESTAMP)

# Flags set by coercion: the value was present but not a number.
RATING_BAD = "_rating_bad"
TS_BAD = "_ts_bad"

# Timestamps must fit Int64; floats beyond this cannot be converted exactly.
_TS_LIMIT = 2.0**63


class Issue(NamedTuple):
    """One unusable input line: where, why and (when known) which field."""

    line: int
    reason: str
    field: str | None = None


class Parsed(NamedTuple):
    """A parsed chunk: the usable rows, the unusable lines, how many data lines it had, and
    notes (counts of rows read in a fallback way, by what was done)."""

    frame: pl.DataFrame
    issues: list[Issue]
    lines: int
    notes: Counter[str] = Counter()


@dataclass(frozen=True)
class FieldNames:
    """The source's own names for user, item, rating and ts: bad rows are reported under them."""

    user: str = USER
    item: str = ITEM
    rating: str = RATING
    ts: str = TS


def account(report: ReadReport, parsed: Parsed) -> pl.DataFrame:
    """Record a chunk in the report (bad lines in line order, so strict mode stops at the first)."""
    for issue in sorted(parsed.issues):
        report.skip(issue.line, issue.reason, issue.field)
    report.lines_read += parsed.lines
    report.rows += parsed.frame.height
    report.notes.update(parsed.notes)
    # Every data line is either returned or counted: a mismatch is a bug in a parser.
    assert parsed.lines == parsed.frame.height + len(parsed.issues), "reader lost lines"
    return parsed.frame


def to_text(series: pl.Series, *, strip: bool = False) -> pl.Series:
    """Ids and text as strings (integers in decimal); `strip` trims delimited-text ids."""
    out = series if series.dtype == pl.String else series.cast(pl.String, strict=False)
    if strip:
        out = out.str.strip_chars()
    return out


def to_float(series: pl.Series) -> tuple[pl.Series, pl.Series]:
    """(Float64 values, flag 'present but not a number'); empty strings count as absent."""
    dtype = series.dtype
    if dtype.is_numeric():
        value = series.cast(pl.Float64)
        return value, pl.Series([False] * len(series), dtype=pl.Boolean)
    if dtype == pl.String:
        text = _blank_to_null(series)
        value = text.cast(pl.Float64, strict=False)
        return value, text.is_not_null() & value.is_null()
    # Booleans, lists, structs: never a number.
    return pl.Series([None] * len(series), dtype=pl.Float64), series.is_not_null()


def to_timestamp(series: pl.Series) -> tuple[pl.Series, pl.Series]:
    """(Int64 unix seconds, flag 'present but not usable as a time')."""
    dtype = series.dtype
    if dtype.is_integer():
        value = series.cast(pl.Int64, strict=False)  # UInt64 beyond Int64 -> null -> bad
    elif dtype.is_float():
        value = _float_to_int(series)
    elif dtype == pl.String:
        text = _blank_to_null(series)
        as_int = text.cast(pl.Int64, strict=False)
        # "978300760.0" (RecBole writes float timestamps) parses only as a float.
        value = as_int.fill_null(_float_to_int(text.cast(pl.Float64, strict=False)))
        return value, text.is_not_null() & value.is_null()
    elif dtype == pl.Datetime or dtype == pl.Date:
        value = series.cast(pl.Datetime("us")).dt.epoch("s")
    else:
        value = pl.Series([None] * len(series), dtype=pl.Int64)
    return value, series.is_not_null() & value.is_null()


def _blank_to_null(series: pl.Series) -> pl.Series:
    text = series.str.strip_chars()
    return pl.select(pl.when(text.str.len_bytes() > 0).then(text)).to_series()


def _float_to_int(series: pl.Series) -> pl.Series:
    """Floor finite floats that fit Int64; anything else becomes null (floor, so -0.5 < 0)."""
    ok = series.is_finite() & (series.abs() < _TS_LIMIT)
    return pl.select(pl.when(ok).then(series.floor().cast(pl.Int64, strict=False))).to_series()


def validate_events(
    frame: pl.DataFrame,
    names: FieldNames,
    scale: RatingScale,
    extra: Sequence[str] = (),
) -> Parsed:
    """Split canonical-typed rows into usable events and issues.

    `frame` has user, item (String), rating (Float64), ts (Int64), `_line`, optionally the
    RATING_BAD / TS_BAD flags, and the `extra` columns that pass through (text, summary).
    Checks run in a fixed order (user, item, rating, ts) so each bad row gets one reason.
    """
    absent = [flag for flag in (RATING_BAD, TS_BAD) if flag not in frame.columns]
    frame = frame.with_columns(pl.lit(False).alias(flag) for flag in absent)
    rating, ts = pl.col(RATING), pl.col(TS)
    missing_id = {
        col: pl.col(col).is_null() | (pl.col(col).str.len_bytes() == 0) for col in (USER, ITEM)
    }
    not_a_number = pl.col(RATING_BAD) | (rating.is_not_null() & ~rating.is_finite())
    checks = [
        (missing_id[USER], MISSING, names.user),
        (missing_id[ITEM], MISSING, names.item),
        (not_a_number, BAD_RATING, names.rating),
        (rating.is_null(), MISSING, names.rating),
        (~rating.is_between(scale.low, scale.high), OUT_OF_SCALE, names.rating),
        (pl.col(TS_BAD) | ts.is_null() | (ts < 0), BAD_TIMESTAMP, names.ts),
    ]
    reason = pl.when(checks[0][0]).then(pl.lit(_code(checks[0])))
    for check in checks[1:]:
        reason = reason.when(check[0]).then(pl.lit(_code(check)))
    judged = frame.with_columns(reason.otherwise(None).alias("_reason"))
    bad = judged.filter(pl.col("_reason").is_not_null())
    issues = [Issue(line, *_decode(code)) for line, code in bad.select(LINE, "_reason").rows()]
    good = judged.filter(pl.col("_reason").is_null()).select(
        [pl.col(c).cast(t) for c, t in EVENT_SCHEMA.items()] + [pl.col(c) for c in extra] + [LINE]
    )
    return Parsed(good, issues, frame.height)


def _code(check: tuple[pl.Expr, str, str]) -> str:
    return f"{check[1]}\x1f{check[2]}"


def _decode(code: str) -> tuple[str, str]:
    reason, field = code.split("\x1f", 1)
    return reason, field


def to_price(series: pl.Series) -> pl.Series:
    """Prices as Float64: numbers as they are, "$1,299.00" parsed; ranges and junk -> null."""
    if series.dtype.is_numeric():
        value = series.cast(pl.Float64)
    elif series.dtype == pl.String:
        text = series.str.strip_chars().str.strip_prefix("$").str.replace_all(",", "")
        value = text.cast(pl.Float64, strict=False)
    else:
        return pl.Series(series.name, [None] * len(series), dtype=pl.Float64)
    ok = value.is_finite() & (value >= 0)
    return pl.select(pl.when(ok).then(value)).to_series().alias(series.name)


def finish_items(frame: pl.DataFrame, id_field: str, issues: list[Issue], lines: int) -> Parsed:
    """Canonical item columns (+ `_line`); rows without an id become issues."""
    missing = pl.col(ITEM).is_null() | (pl.col(ITEM).str.len_bytes() == 0)
    bad = frame.filter(missing)
    issues = issues + [Issue(line, MISSING, id_field) for line in bad[LINE].to_list()]
    good = frame.filter(~missing)
    good = good.with_columns(
        _clean_categories(pl.col("category")),
        _blank_expr(pl.col("brand").cast(pl.String)),
        _blank_expr(pl.col("title").cast(pl.String)),
        price=to_price(good["price"]),
    )
    return Parsed(good.select(ITEM, "category", "brand", "price", "title", LINE), issues, lines)


def _clean_categories(expr: pl.Expr) -> pl.Expr:
    # Flattened, without blanks or repeats, in first-seen order; no categories -> [].
    kept = pl.element().filter(pl.element().is_not_null() & (pl.element().str.len_bytes() > 0))
    return (
        expr.cast(pl.List(pl.String))
        .list.eval(kept)
        .list.unique(maintain_order=True)
        .fill_null(pl.lit([], dtype=pl.List(pl.String)))
        .alias("category")
    )


def _blank_expr(expr: pl.Expr) -> pl.Expr:
    text = expr.str.strip_chars()
    return pl.when(text.str.len_bytes() > 0).then(text)
