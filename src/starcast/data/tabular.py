"""Delimited text (MovieLens, RecBole, CSV) and Parquet readers, for events and items.

Unquoted line formats (u.data, ratings.dat, RecBole .inter) are split a chunk at a time in
polars. CSV is read record by record with `csv` (quoting, including quoted newlines); each
record keeps the line it starts on (header = line 1). Parquet rows are numbered from 1.
All values are read as text (or Arrow types) and coerced with the shared functions in
`validation`, so a rating of "abc" is a bad rating whatever the container.
"""

from __future__ import annotations

import csv
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from starcast.data import formats as fm
from starcast.data.report import ReadReport
from starcast.data.schema import ITEM, LINE, RATING, TS, USER, RatingScale
from starcast.data.validation import (
    MALFORMED,
    RATING_BAD,
    TS_BAD,
    FieldNames,
    Issue,
    Parsed,
    finish_items,
    to_float,
    to_text,
    to_timestamp,
    validate_events,
)
from starcast.errors import DataError

# (line the record starts on, its fields; None when the csv module could not parse it)
Record = tuple[int, list[str] | None]
TEXT, SUMMARY = "text", "summary"
ITEM_FEATURES = ("category", "brand", "price", "title")
CATEGORY_SEPARATOR = "|"


@dataclass(frozen=True)
class ColumnMap:
    """Which columns of a CSV or Parquet file hold user, item, rating, ts (and text)."""

    user: str = USER
    item: str = ITEM
    rating: str = RATING
    ts: str = TS
    text: str | None = None
    summary: str | None = None


# Tried, in order, when a column keeps its default name and that name is absent.
ALIASES: dict[str, tuple[str, ...]] = {
    USER: ("user_id", "userId", "reviewerID"),
    ITEM: ("item_id", "movieId", "parent_asin", "asin"),
    RATING: ("overall", "stars"),
    TS: ("timestamp", "unixReviewTime"),
    TEXT: ("reviewText",),
    SUMMARY: ("title",),
}
_ROLES = (USER, ITEM, RATING, TS)
# Formats whose records are single lines split on a plain separator, without quoting.
LINE_SEPARATORS: dict[str, str] = {
    fm.MOVIELENS_DATA: "\t",
    fm.MOVIELENS_DAT: "::",
    fm.RECBOLE: "\t",
}


@dataclass(frozen=True)
class Layout:
    """Where the four event fields (and optional text) sit in each record."""

    index: dict[str, int]  # role -> field position
    names: FieldNames  # the file's own names, for messages
    width: int  # fields every record must have


# ---- records --------------------------------------------------------------------------


def csv_records(path: str | Path, report: ReadReport | None = None) -> Iterator[Record]:
    """Non-blank CSV records with the line each starts on; an unparsable record gives None.
    (`report`: see `formats.open_binary`.)"""
    with fm.open_text(path, report) as f:
        reader = csv.reader(f)
        end = 0
        while True:
            try:
                row: list[str] | None = next(reader)
            except StopIteration:
                return
            except csv.Error:  # e.g. a field beyond csv.field_size_limit
                row = None
            start, end = end + 1, reader.line_num
            # A blank line reads as [] (or [""] for whitespace): not a record, but counted.
            if row is None or len(row) > 1 or (row and row[0].strip()):
                yield start, row
            elif report is not None:
                report.blank_lines += 1
                report.lines_read += 1


def split_header(raw: bytes, separator: str) -> list[str]:
    """The column names of a line format's header line."""
    return raw.decode("utf-8", errors="replace").split(separator)


# ---- layouts --------------------------------------------------------------------------


def headerless_layout() -> Layout:
    """u.data and ratings.dat: user, item, rating, ts and nothing else."""
    return Layout({role: i for i, role in enumerate(_ROLES)}, FieldNames(), len(_ROLES))


def header_layout(
    path: str | Path, fmt: str, header: list[str], columns: ColumnMap | None, text: bool
) -> Layout:
    """Locate the event columns in a header row; a missing one is a DataError on line 1."""
    names = [h.strip() for h in header]
    if fmt == fm.RECBOLE:
        names = [n.split(":", 1)[0] for n in names]  # "rating:float" -> "rating"
    wanted = _wanted(fmt, columns or ColumnMap())
    index: dict[str, int] = {}
    for role, candidates in wanted.items():
        found = next((names.index(c) for c in candidates if c in names), None)
        if found is not None:
            index[role] = found
        elif role in _ROLES:
            raise DataError(
                f"no column for {role} (looked for {', '.join(candidates)})",
                file=str(path),
                line=1,
                field=candidates[0],
            )
    if not text:
        index = {r: i for r, i in index.items() if r in _ROLES}
    field_names = FieldNames(*(names[index[r]] for r in _ROLES))
    return Layout(index, field_names, len(names))


def column_roles(path: str | Path, names: list[str], columns: ColumnMap | None) -> dict[str, str]:
    """Parquet: role -> column name, with the same aliasing as CSV."""
    wanted = _wanted(fm.CSV, columns or ColumnMap())
    roles = {}
    for role, candidates in wanted.items():
        found = next((c for c in candidates if c in names), None)
        if found is not None:
            roles[role] = found
        elif role in _ROLES:
            looked = ", ".join(candidates)
            raise DataError(f"no column for {role} (looked for {looked})", file=str(path))
    return roles


def _wanted(fmt: str, columns: ColumnMap) -> dict[str, tuple[str, ...]]:
    if fmt == fm.MOVIELENS_CSV:
        return {role: (name,) for role, name in zip(_ROLES, fm.MOVIELENS_CSV_HEADER, strict=True)}
    if fmt == fm.RECBOLE:
        return {USER: ("user_id",), ITEM: ("item_id",), RATING: ("rating",), TS: ("timestamp",)}
    configured = {
        USER: columns.user,
        ITEM: columns.item,
        RATING: columns.rating,
        TS: columns.ts,
        TEXT: columns.text or TEXT,
        SUMMARY: columns.summary or SUMMARY,
    }
    defaults = {USER: USER, ITEM: ITEM, RATING: RATING, TS: TS, TEXT: TEXT, SUMMARY: SUMMARY}
    out = {}
    for role, name in configured.items():
        # Aliases only stand in for a default name: an explicit name means exactly that column.
        extra = ALIASES[role] if name == defaults[role] else ()
        out[role] = (name, *extra)
    return out


# ---- events from records --------------------------------------------------------------


def parse_record_chunk(
    chunk: list[Record], layout: Layout, *, text: bool, scale: RatingScale
) -> Parsed:
    """Usable events and issues for a chunk of delimited records."""
    lines, rows, issues = _split_by_width(chunk, layout.width)
    wanted = [role for role in (*_ROLES, TEXT, SUMMARY) if role in layout.index]
    raw = {role: [row[layout.index[role]] for row in rows] for role in wanted}
    frame = pl.DataFrame(raw, schema={role: pl.String() for role in wanted})
    frame = frame.with_columns(pl.Series(LINE, lines, dtype=pl.Int64))
    return _validated(frame, layout.names, scale, text, issues, len(chunk), strip_ids=True)


def parse_line_chunk(
    lines: list[tuple[int, bytes]],
    separator: str,
    layout: Layout,
    *,
    text: bool,
    scale: RatingScale,
) -> Parsed:
    """Usable events and issues for a chunk of unquoted separator-delimited lines."""
    numbers = pl.Series(LINE, [n for n, _ in lines], dtype=pl.Int64)
    # Invalid UTF-8 becomes null, so such a line counts as malformed rather than mangled ids.
    parts = _decoded(lines).str.split(separator)
    fits = (parts.list.len() == layout.width).fill_null(False)
    issues = [Issue(n, MALFORMED) for n in numbers.filter(~fits).to_list()]
    parts = parts.filter(fits)
    frame = pl.DataFrame([parts.list.get(i).alias(role) for role, i in layout.index.items()])
    frame = frame.with_columns(numbers.filter(fits))
    return _validated(frame, layout.names, scale, text, issues, len(lines), strip_ids=True)


def _decoded(lines: list[tuple[int, bytes]]) -> pl.Series:
    """The lines as text, null where a line is not valid UTF-8."""
    raw = pl.Series(values=[line for _, line in lines], dtype=pl.Binary)
    try:
        return raw.cast(pl.String, strict=False)
    except pl.exceptions.ComputeError:  # (some Polars versions raise instead of nulling)
        return pl.Series([_utf8(line) for _, line in lines], dtype=pl.String)


def _utf8(line: bytes) -> str | None:
    try:
        return line.decode("utf-8")
    except UnicodeDecodeError:
        return None


def parse_arrow_chunk(
    frame: pl.DataFrame, first_line: int, names: FieldNames, *, text: bool, scale: RatingScale
) -> Parsed:
    """Usable events and issues for a Parquet batch already renamed to roles."""
    numbers = pl.int_range(first_line, first_line + frame.height, dtype=pl.Int64, eager=True)
    frame = frame.with_columns(numbers.alias(LINE))
    return _validated(frame, names, scale, text, [], frame.height, strip_ids=False)


def _split_by_width(
    chunk: list[Record], width: int
) -> tuple[list[int], list[list[str]], list[Issue]]:
    """Records with the expected number of fields, and the others as malformed lines."""
    lines: list[int] = []
    rows: list[list[str]] = []
    issues: list[Issue] = []
    for number, row in chunk:
        if row is None or len(row) != width:
            issues.append(Issue(number, MALFORMED))
        else:
            lines.append(number)
            rows.append(row)
    return lines, rows, issues


def _validated(
    frame: pl.DataFrame,
    names: FieldNames,
    scale: RatingScale,
    text: bool,
    issues: list[Issue],
    count: int,
    *,
    strip_ids: bool,
) -> Parsed:
    rating, rating_bad = to_float(frame[RATING])
    ts, ts_bad = to_timestamp(frame[TS])
    columns = [
        to_text(frame[USER], strip=strip_ids).alias(USER),
        to_text(frame[ITEM], strip=strip_ids).alias(ITEM),
        rating.alias(RATING),
        ts.alias(TS),
        rating_bad.alias(RATING_BAD),
        ts_bad.alias(TS_BAD),
        frame[LINE],
    ]
    if text:
        # A file without text columns still gives them, empty, so the shape is predictable.
        columns += [_optional_text(frame, c) for c in (TEXT, SUMMARY)]
    extra = (TEXT, SUMMARY) if text else ()
    checked = validate_events(pl.DataFrame(columns), names, scale, extra)
    return Parsed(checked.frame, issues + checked.issues, count)


def _optional_text(frame: pl.DataFrame, name: str) -> pl.Series:
    if name in frame.columns:
        return to_text(frame[name]).alias(name)
    return pl.Series(name, [None] * frame.height, dtype=pl.String)


# ---- items ----------------------------------------------------------------------------


def item_layout(path: str | Path, header: list[str]) -> dict[str, int]:
    """items-csv: the canonical column names; only `item` is required."""
    names = [h.strip() for h in header]
    if ITEM not in names:
        raise DataError("no 'item' column in the header", file=str(path), line=1, field=ITEM)
    return {c: names.index(c) for c in (ITEM, *ITEM_FEATURES) if c in names}


def parse_item_records(chunk: list[Record], index: dict[str, int], width: int) -> Parsed:
    """items-csv: item rows and issues for a chunk of records."""
    lines, rows, issues = _split_by_width(chunk, width)
    raw = {c: [row[i] for row in rows] for c, i in index.items()}
    frame = pl.DataFrame(raw, schema={c: pl.String() for c in index})
    frame = frame.with_columns(
        pl.Series(LINE, lines, dtype=pl.Int64), pl.col(ITEM).str.strip_chars()
    )
    return finish_items(_item_columns(frame), ITEM, issues, len(chunk))


def parse_item_batch(frame: pl.DataFrame, first_line: int) -> Parsed:
    """items-parquet: item rows and issues for one batch (rows numbered from `first_line`)."""
    numbers = pl.int_range(first_line, first_line + frame.height, dtype=pl.Int64, eager=True)
    frame = frame.with_columns(numbers.alias(LINE), to_text(frame[ITEM]).alias(ITEM))
    return finish_items(_item_columns(frame), ITEM, [], frame.height)


def _item_columns(frame: pl.DataFrame) -> pl.DataFrame:
    """Fill absent feature columns; a text category is the '|'-joined list."""
    absent = [c for c in ITEM_FEATURES if c not in frame.columns]
    frame = frame.with_columns(pl.lit(None, dtype=pl.String).alias(c) for c in absent)
    if frame.schema["category"] in (pl.String, pl.Null):
        split = pl.col("category").cast(pl.String).str.split(CATEGORY_SEPARATOR)
        frame = frame.with_columns(split.list.eval(pl.element().str.strip_chars()))
    return frame
