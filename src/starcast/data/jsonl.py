"""JSON-lines and Python-literal-lines readers: Amazon reviews (2014/2018/2023) and metadata.

Each chunk of lines is parsed into a "raw" frame holding only the needed source fields,
typed. The fast path hands the whole chunk to `pl.read_ndjson`; on any error the chunk is
halved and retried, and small pieces fall back to `json.loads` per line, which is the
authority on what a line means. Both paths build the same raw frame, so everything after
(conversion, validation) is shared and cannot disagree.
"""

from __future__ import annotations

import ast
import io
import json
import math
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import polars as pl

from starcast.data import formats as fm
from starcast.data.schema import ITEM, LINE, RATING, TS, USER, RatingScale
from starcast.data.validation import (
    MALFORMED,
    RATING_BAD,
    TS_BAD,
    FieldNames,
    Issue,
    Parsed,
    finish_items,
    validate_events,
)

Line = tuple[int, bytes]
Schema = dict[str, pl.DataType]

# Below this many lines a failing chunk is parsed line by line instead of halved again.
_MIN_FAST_LINES = 32
_INT64_MAX = 2**63 - 1
_NUMERIC = (pl.Float64, pl.Int64)
_DECODE_ERRORS = (ValueError, SyntaxError, TypeError, MemoryError, RecursionError)


class _Unusable(Exception):
    """A value that cannot be held as text (lone surrogates): the line is malformed."""


@dataclass(frozen=True)
class JsonEvents:
    """Where one review dump keeps user, item, rating, ts, text and summary."""

    user: str
    items: tuple[str, ...]  # first non-empty wins (2023: parent_asin, then asin)
    rating: str
    ts: str
    text: str
    summary: str
    ts_per_second: int = 1  # 1000 where the dump stores milliseconds
    ts_text: str | None = None  # a date as text ("MM DD, YYYY") read where `ts` is missing

    @property
    def names(self) -> FieldNames:
        return FieldNames(self.user, self.items[0], self.rating, self.ts)

    def schema(self, text: bool) -> Schema:
        schema: Schema = {self.user: pl.String()}
        schema.update({name: pl.String() for name in self.items})
        schema.update({self.rating: pl.Float64(), self.ts: pl.Int64()})
        if self.ts_text:
            schema[self.ts_text] = pl.String()
        if text:
            schema.update({self.text: pl.String(), self.summary: pl.String()})
        return schema


AMAZON_REVIEWS = JsonEvents(
    "reviewerID", ("asin",), "overall", "unixReviewTime", "reviewText", "summary",
    ts_text="reviewTime",
)
TS_FROM_TEXT = "ts read from the date text (no unix time)"
EVENT_SPECS: dict[str, JsonEvents] = {
    fm.AMAZON_2014: AMAZON_REVIEWS,
    fm.AMAZON_2018: AMAZON_REVIEWS,
    fm.AMAZON_2023: JsonEvents(
        "user_id", ("parent_asin", "asin"), "rating", "timestamp", "text", "title", 1000
    ),
}


def parse_event_chunk(
    lines: list[Line], spec: JsonEvents, *, text: bool, scale: RatingScale
) -> Parsed:
    """Usable events and issues for one chunk of JSON lines."""
    raw, issues = parse_raw(lines, spec.schema(text), _json_loads, fast=True)
    item = pl.coalesce([pl.when(pl.col(c).str.len_bytes() > 0).then(pl.col(c)) for c in spec.items])
    ts = pl.col(spec.ts) // spec.ts_per_second
    from_text = pl.lit(False)
    if spec.ts_text:  # "09 1, 2016" at midnight UTC, where the unix time is missing
        date = (pl.col(spec.ts_text).str.strptime(pl.Date, "%m %d, %Y", strict=False)
                .cast(pl.Datetime("ms")).dt.epoch("s"))
        from_text = pl.col(spec.ts).is_null() & ~pl.col(_bad(spec.ts)) & date.is_not_null()
        ts = pl.when(from_text).then(date).otherwise(ts)
    columns = [
        pl.col(spec.user).alias(USER),
        item.alias(ITEM),
        pl.col(spec.rating).alias(RATING),
        ts.alias(TS),
        pl.col(_bad(spec.rating)).alias(RATING_BAD),
        pl.col(_bad(spec.ts)).alias(TS_BAD),
        pl.col(LINE),
    ]
    if text:
        columns += [pl.col(spec.text).alias("text"), pl.col(spec.summary).alias("summary")]
    extra = ("text", "summary") if text else ()
    fallback = int(raw.select(from_text.sum()).item()) if spec.ts_text and raw.height else 0
    checked = validate_events(raw.select(columns), spec.names, scale, extra)
    notes = Counter({TS_FROM_TEXT: fallback} if fallback else {})
    return Parsed(checked.frame, issues + checked.issues, len(lines), notes)


# ---- metadata -------------------------------------------------------------------------

_META_SCHEMAS: dict[str, Schema] = {
    fm.META_2014: {
        "asin": pl.String(),
        "categories": pl.List(pl.List(pl.String())),
        "brand": pl.String(),
        "price": pl.String(),
        "title": pl.String(),
    },
    fm.META_2018: {
        "asin": pl.String(),
        "category": pl.List(pl.String()),
        "brand": pl.String(),
        "price": pl.String(),
        "title": pl.String(),
    },
    fm.META_2023: {
        "parent_asin": pl.String(),
        "main_category": pl.String(),
        "categories": pl.List(pl.String()),
        "store": pl.String(),
        "price": pl.String(),
        "title": pl.String(),
    },
}

_META_COLUMNS: dict[str, tuple[str, pl.Expr, str]] = {
    # format: (id field, category expression, brand field)
    fm.META_2014: ("asin", pl.col("categories").list.eval(pl.element().explode()), "brand"),
    fm.META_2018: ("asin", pl.col("category"), "brand"),
    fm.META_2023: (
        "parent_asin",
        pl.concat_list(pl.col("main_category"), pl.col("categories").fill_null([])),
        "store",
    ),
}


def parse_meta_chunk(lines: list[Line], fmt: str) -> Parsed:
    """Item rows and issues for one chunk of metadata lines (only a missing id is bad)."""
    literal = fmt == fm.META_2014
    decode = _literal_loads if literal else _json_loads
    raw, issues = parse_raw(lines, _META_SCHEMAS[fmt], decode, fast=not literal)
    id_field, category, brand = _META_COLUMNS[fmt]
    frame = raw.select(
        pl.col(id_field).alias(ITEM),
        category.alias("category"),
        pl.col(brand).alias("brand"),
        pl.col("price"),
        pl.col("title"),
        pl.col(LINE),
    )
    return finish_items(frame, id_field, issues, len(lines))


# ---- shared raw parsing ---------------------------------------------------------------


def parse_raw(
    lines: list[Line], schema: Schema, decode: Callable[[bytes], object], *, fast: bool
) -> tuple[pl.DataFrame, list[Issue]]:
    """The raw frame (schema fields, `_bad_<field>` flags, `_line`) and malformed lines."""
    if fast and lines:
        try:
            frame, recheck = _fast(lines, schema)
        except (Exception, pl.exceptions.PanicException):
            # Something in the chunk is off: narrow it down so the rest stays fast.
            if len(lines) > _MIN_FAST_LINES:
                half = len(lines) // 2
                head, head_issues = parse_raw(lines[:half], schema, decode, fast=True)
                tail, tail_issues = parse_raw(lines[half:], schema, decode, fast=True)
                return pl.concat([head, tail]), head_issues + tail_issues
        else:
            if not recheck:
                return frame, []
            checked, issues = _slow(recheck, schema, decode)
            return pl.concat([frame, checked]).sort(LINE), issues
    return _slow(lines, schema, decode)


def _fast(lines: list[Line], schema: Schema) -> tuple[pl.DataFrame, list[Line]]:
    """The chunk through `pl.read_ndjson`, less the lines the line path must judge."""
    data = b"\n".join(raw for _, raw in lines)
    frame = pl.read_ndjson(io.BytesIO(data), schema=schema)
    if frame.height != len(lines):
        raise ValueError("row count differs from line count")
    flags = [pl.lit(False).alias(_bad(n)) for n, t in schema.items() if _is_numeric(t)]
    numbers = pl.Series(LINE, [n for n, _ in lines], dtype=pl.Int64)
    frame = frame.with_columns(*flags, numbers)
    # polars renders an array or object found where text is expected in its own way; such
    # rows (and any text that merely starts with [ or {) go to the line path, which decides.
    looks_nested = frame.select(_looks_nested(schema)).to_series()
    if not looks_nested.any():
        return frame, []
    recheck = [line for line, odd in zip(lines, looks_nested, strict=True) if odd]
    return frame.filter(~looks_nested), recheck


def _looks_nested(schema: Schema) -> pl.Expr:
    def nested(text: pl.Expr) -> pl.Expr:
        return text.str.starts_with("[") | text.str.starts_with("{")

    checks = [nested(pl.col(n)) for n, t in schema.items() if t == pl.String]
    checks += [
        pl.col(n).list.eval(nested(pl.element())).list.any()
        for n, t in schema.items()
        if t == pl.List(pl.String)
    ]
    return pl.any_horizontal(checks).fill_null(False) if checks else pl.lit(False)


def _slow(
    lines: list[Line], schema: Schema, decode: Callable[[bytes], object]
) -> tuple[pl.DataFrame, list[Issue]]:
    columns: dict[str, list] = {name: [] for name in _raw_schema(schema)}
    issues: list[Issue] = []
    for number, raw in lines:
        try:
            record = decode(raw)
            if not isinstance(record, dict):
                raise TypeError("not an object")
            values = _convert_record(record, schema)
        except (*_DECODE_ERRORS, _Unusable):
            issues.append(Issue(number, MALFORMED))
            continue
        for name, value in values.items():
            columns[name].append(value)
        columns[LINE].append(number)
    return pl.DataFrame(columns, schema=_raw_schema(schema)), issues


def _raw_schema(schema: Schema) -> Schema:
    out = dict(schema)
    out.update({_bad(n): pl.Boolean() for n, t in schema.items() if _is_numeric(t)})
    out[LINE] = pl.Int64()
    return out


def _convert_record(record: dict, schema: Schema) -> dict[str, object]:
    values: dict[str, object] = {}
    for name, dtype in schema.items():
        value = record.get(name)
        if _is_numeric(dtype):
            convert = _as_float if dtype == pl.Float64 else _as_int
            values[name], values[_bad(name)] = convert(value)
        elif dtype == pl.String:
            values[name] = _as_text(value)
        else:
            values[name] = _as_list(value, nested=dtype.inner == pl.List)  # type: ignore[attr-defined]
    return values


def _as_float(value: object) -> tuple[float | None, bool]:
    if value is None:
        return None, False
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None, True
    try:
        return float(value), False
    except OverflowError:  # an int beyond float range
        return None, True


def _as_int(value: object) -> tuple[int | None, bool]:
    if value is None:
        return None, False
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None, True
    if isinstance(value, float):
        if not math.isfinite(value):
            return None, True
        value = math.floor(value)
    return (value, False) if -_INT64_MAX <= value <= _INT64_MAX else (None, True)


def _as_text(value: object) -> str | None:
    """Scalars as polars' JSON reader renders them, so both paths give the same id."""
    if value is None:
        return None
    if isinstance(value, str):
        text = value
    elif isinstance(value, bool):
        text = "true" if value else "false"
    elif isinstance(value, int):
        text = str(value)
    elif isinstance(value, float):
        text = np.format_float_positional(value, trim="-")
    else:
        text = json.dumps(value, ensure_ascii=False)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as err:
        raise _Unusable from err
    return text


def _as_list(value: object, *, nested: bool) -> list | None:
    if not isinstance(value, list):
        return None  # a category that is not a list carries no usable categories
    if not nested:
        return [_as_text(v) for v in value]
    # 2014 categories are lists of paths; tolerate a bare string where a path should be.
    return [_as_list(v if isinstance(v, list) else [v], nested=False) for v in value]


def _is_numeric(dtype: pl.DataType) -> bool:
    return any(dtype == t for t in _NUMERIC)


def _bad(name: str) -> str:
    return f"_bad_{name}"


def _first_key_wins(pairs: list[tuple[str, object]]) -> dict:
    # polars keeps the first of repeated keys; match it so both paths agree.
    return dict(reversed(pairs))


def _json_loads(raw: bytes) -> object:
    # strict=False: control characters inside strings are tolerated, not fatal.
    return json.loads(raw, strict=False, object_pairs_hook=_first_key_wins)


def _literal_loads(raw: bytes) -> object:
    """The 2014 metadata is Python literals; some copies were converted to JSON."""
    try:
        return _json_loads(raw)
    except ValueError:
        return ast.literal_eval(raw.decode("utf-8"))
