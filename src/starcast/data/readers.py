"""Read review dumps into canonical events and item features, streamed chunk by chunk.

Every data line is either returned or counted in the `ReadReport` with a reason
(`lines_read == rows + bad_total`); `strict=True` raises a DataError at the first bad line.

    read_events(path)          -> ReadResult(events, report)   de-duplicated, input order
    iter_event_chunks(path)    -> frames with `_line`, not de-duplicated (for conversions)
    read_items(path)           -> ItemsResult(items, report)
    detect_format(path)        -> one of EVENT_FORMATS + ITEM_FORMATS
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from starcast.data import formats as fm
from starcast.data import jsonl, tabular
from starcast.data.formats import EVENT_FORMATS, ITEM_FORMATS, detect_format
from starcast.data.frames import TS_LIMIT, UNITS, time_unit
from starcast.data.report import ReadReport
from starcast.data.schema import (
    EVENT_SCHEMA,
    ITEM,
    ITEM_SCHEMA,
    LINE,
    TEXT_COLUMNS,
    TS,
    RatingScale,
    dedupe_events,
)
from starcast.data.tabular import ColumnMap
from starcast.data.validation import (
    BAD_RATING,
    BAD_TIMESTAMP,
    MALFORMED,
    MISSING,
    OUT_OF_SCALE,
    REASONS,
    FieldNames,
    Parsed,
    account,
)
from starcast.errors import DataError

__all__ = [
    "BAD_RATING",
    "BAD_TIMESTAMP",
    "EVENT_FORMATS",
    "ITEM_FORMATS",
    "MALFORMED",
    "MISSING",
    "OUT_OF_SCALE",
    "REASONS",
    "ColumnMap",
    "ItemsResult",
    "ReadResult",
    "detect_format",
    "iter_event_chunks",
    "read_events",
    "read_items",
]

DEFAULT_CHUNK_LINES = 200_000
DEFAULT_SCALE = RatingScale()  # frozen, so one shared default is safe


@dataclass
class ReadResult:
    """Canonical events (user, item, rating, ts [+ text, summary]) and the read's accounting."""

    events: pl.DataFrame
    report: ReadReport


@dataclass
class ItemsResult:
    """Item features in ITEM_SCHEMA, one row per item, and the read's accounting."""

    items: pl.DataFrame
    report: ReadReport


def read_events(
    path: str | Path,
    *,
    format: str | None = None,
    text: bool = False,
    strict: bool = False,
    scale: RatingScale = DEFAULT_SCALE,
    columns: ColumnMap | None = None,
    dedupe: bool = True,
    chunk_lines: int = DEFAULT_CHUNK_LINES,
    allow_truncated: bool = False,
) -> ReadResult:
    """All usable events of `path`, in input order; (user, item) repeats keep the latest.

    A compressed file that breaks off is an error naming it, unless `allow_truncated`: then the
    lines before the break are kept and `report.truncated_at` says where it broke."""
    report = ReadReport(str(path), "", strict=strict, allow_truncated=allow_truncated)
    chunks = iter_event_chunks(
        path,
        format=format,
        text=text,
        strict=strict,
        scale=scale,
        columns=columns,
        chunk_lines=chunk_lines,
        report=report,
    )
    frames = list(chunks)
    events = pl.concat(frames) if frames else _empty_events(text)
    if dedupe:
        events, report.duplicates_removed = dedupe_events(events)
    return ReadResult(events.drop(LINE), report)


def iter_event_chunks(
    path: str | Path,
    *,
    format: str | None = None,
    text: bool = False,
    strict: bool = False,
    scale: RatingScale = DEFAULT_SCALE,
    columns: ColumnMap | None = None,
    chunk_lines: int = DEFAULT_CHUNK_LINES,
    report: ReadReport | None = None,
) -> Iterator[pl.DataFrame]:
    """Usable events chunk by chunk, each with its input line in `_line`; no de-duplication.

    Pass `report` to receive the accounting (its source, format and strict are set here).
    The format is resolved now, so a bad format name fails at the call, not at iteration.
    """
    fmt = fm.resolve_format(path, format, EVENT_FORMATS)
    _check_chunk_lines(chunk_lines)
    report = _prepare(report, path, fmt, strict)
    parsed = _parsed_events(Path(path), fmt, text, scale, columns, chunk_lines, report)
    return _accounted(parsed, report)


def read_items(
    path: str | Path,
    *,
    format: str | None = None,
    strict: bool = False,
    chunk_lines: int = DEFAULT_CHUNK_LINES,
    allow_truncated: bool = False,
) -> ItemsResult:
    """Item features of `path`, one row per item (a repeated item keeps its last line)."""
    fmt = fm.resolve_format(path, format, ITEM_FORMATS)
    _check_chunk_lines(chunk_lines)
    report = _prepare(ReadReport(str(path), fmt, allow_truncated=allow_truncated), path, fmt,
                      strict)
    frames = list(_accounted(_parsed_items(Path(path), fmt, chunk_lines, report), report))
    items = pl.concat(frames) if frames else pl.DataFrame(schema=ITEM_SCHEMA | {LINE: pl.Int64()})
    kept = items.unique(subset=[ITEM], keep="last", maintain_order=True)
    report.duplicates_removed = items.height - kept.height
    return ItemsResult(kept.drop(LINE).cast(ITEM_SCHEMA), report)  # type: ignore[arg-type]


# ---- plumbing -------------------------------------------------------------------------


def _prepare(report: ReadReport | None, path: str | Path, fmt: str, strict: bool) -> ReadReport:
    report = report if report is not None else ReadReport(str(path), fmt)
    report.source, report.format, report.strict = str(path), fmt, strict
    return report


def _check_chunk_lines(chunk_lines: int) -> None:
    if chunk_lines < 1:
        raise ValueError(f"chunk_lines must be at least 1, got {chunk_lines}")


def _accounted(parsed: Iterator[Parsed], report: ReadReport) -> Iterator[pl.DataFrame]:
    for chunk in parsed:
        frame = account(report, chunk)
        if TS in frame.columns:
            frame = _in_seconds(frame, report)
        if frame.height:
            yield frame


def _in_seconds(frame: pl.DataFrame, report: ReadReport) -> pl.DataFrame:
    """The file's ts in seconds: its unit is judged once, on its first rows (a file in
    milliseconds is converted, and the report says so); a row whose ts then lies outside
    [0, 2^34) is counted as bad, never mixed in."""
    if report.ts_unit is None and frame.height:
        report.ts_unit = time_unit(frame[TS])[1]
    divisor = next((d for d, name in UNITS if name == report.ts_unit), 1)
    if divisor > 1:
        frame = frame.with_columns(pl.col(TS) // divisor)
    outside = (pl.col(TS) < 0) | (pl.col(TS) >= TS_LIMIT)
    for line in frame.filter(outside)[LINE].to_list():
        report.skip(int(line), f"ts beyond the year 2514 in {report.ts_unit}", TS)
        report.rows -= 1
    return frame.filter(~outside)


def _empty_events(text: bool) -> pl.DataFrame:
    schema: dict[str, pl.DataType] = dict(EVENT_SCHEMA)
    if text:
        schema.update({c: pl.String() for c in TEXT_COLUMNS})
    schema[LINE] = pl.Int64()
    return pl.DataFrame(schema=schema)


def _parsed_events(
    path: Path,
    fmt: str,
    text: bool,
    scale: RatingScale,
    columns: ColumnMap | None,
    chunk_lines: int,
    report: ReadReport,
) -> Iterator[Parsed]:
    if fmt in jsonl.EVENT_SPECS:
        spec = jsonl.EVENT_SPECS[fmt]
        for lines in fm.chunked(fm.iter_lines(path, report=report), chunk_lines):
            yield jsonl.parse_event_chunk(lines, spec, text=text, scale=scale)
    elif fmt == fm.PARQUET:
        yield from _parquet_events(path, text, scale, columns, chunk_lines)
    else:
        yield from _delimited_events(path, fmt, text, scale, columns, chunk_lines, report)


def _delimited_events(
    path: Path,
    fmt: str,
    text: bool,
    scale: RatingScale,
    columns: ColumnMap | None,
    chunk_lines: int,
    report: ReadReport,
) -> Iterator[Parsed]:
    if fmt in tabular.LINE_SEPARATORS:
        yield from _line_events(path, fmt, text, scale, chunk_lines, report)
        return
    records = tabular.csv_records(path, report)
    header = _header(path, records)
    if header is None:
        return
    layout = tabular.header_layout(path, fmt, header, columns, text)
    for chunk in fm.chunked(records, chunk_lines):
        yield tabular.parse_record_chunk(chunk, layout, text=text, scale=scale)


def _line_events(
    path: Path, fmt: str, text: bool, scale: RatingScale, chunk_lines: int, report: ReadReport
) -> Iterator[Parsed]:
    separator = tabular.LINE_SEPARATORS[fmt]
    lines = fm.iter_lines(path, report=report)
    if fmt == fm.RECBOLE:
        first = next(lines, None)
        if first is None:
            return
        header = tabular.split_header(first[1], separator)
        layout = tabular.header_layout(path, fmt, header, None, text)
    else:
        layout = tabular.headerless_layout()
    for chunk in fm.chunked(lines, chunk_lines):
        yield tabular.parse_line_chunk(chunk, separator, layout, text=text, scale=scale)


def _header(path: Path, records: Iterator[tabular.Record]) -> list[str] | None:
    """The first record, which names the columns; None for an empty file."""
    first = next(records, None)
    if first is None:
        return None
    line, header = first
    if header is None:
        raise DataError("cannot parse the header", file=str(path), line=line)
    return header


def _parquet_events(
    path: Path,
    text: bool,
    scale: RatingScale,
    columns: ColumnMap | None,
    chunk_lines: int,
) -> Iterator[Parsed]:
    source = _parquet_file(path)
    roles = tabular.column_roles(path, source.schema_arrow.names, columns)
    if not text:
        roles = {r: c for r, c in roles.items() if r not in TEXT_COLUMNS}
    names = FieldNames(*(roles[r] for r in EVENT_SCHEMA))
    first = 1
    for batch in source.iter_batches(batch_size=chunk_lines, columns=sorted(set(roles.values()))):
        frame = pl.from_arrow(batch).select(pl.col(c).alias(r) for r, c in roles.items())
        yield tabular.parse_arrow_chunk(frame, first, names, text=text, scale=scale)
        first += frame.height


def _parsed_items(
    path: Path, fmt: str, chunk_lines: int, report: ReadReport
) -> Iterator[Parsed]:
    if fmt == fm.ITEMS_PARQUET:
        yield from _parquet_items(path, chunk_lines)
    elif fmt == fm.ITEMS_CSV:
        records = tabular.csv_records(path, report)
        header = _header(path, records)
        if header is None:
            return
        index = tabular.item_layout(path, header)
        for chunk in fm.chunked(records, chunk_lines):
            yield tabular.parse_item_records(chunk, index, len(header))
    else:
        for lines in fm.chunked(fm.iter_lines(path, report=report), chunk_lines):
            yield jsonl.parse_meta_chunk(lines, fmt)


def _parquet_items(path: Path, chunk_lines: int) -> Iterator[Parsed]:
    source = _parquet_file(path)
    present = [c for c in ITEM_SCHEMA if c in source.schema_arrow.names]
    if ITEM not in present:
        raise DataError("no 'item' column", file=str(path), field=ITEM)
    first = 1
    for batch in source.iter_batches(batch_size=chunk_lines, columns=present):
        frame = pl.from_arrow(batch)
        yield tabular.parse_item_batch(frame, first)
        first += frame.height


def _parquet_file(path: Path):  # -> pyarrow.parquet.ParquetFile
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        return pq.ParquetFile(path)
    except (pa.ArrowInvalid, OSError) as err:
        raise DataError(f"not a readable Parquet file ({err})", file=str(path)) from err
