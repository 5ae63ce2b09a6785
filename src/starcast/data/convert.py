"""A raw review dump, however large, into a Parquet event table (and item features) on disk.

Chunks of the input are parsed and written one at a time, so the raw text is never held in
memory; de-duplication then runs over the staged Parquet with Polars' streaming engine. The
result is what `read_events` returns for the same file (same rows, same de-duplication rule),
sorted by (ts, user, item), with the read report beside it.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from starcast.data.readers import DEFAULT_CHUNK_LINES, ColumnMap, iter_event_chunks, read_items
from starcast.data.report import ReadReport
from starcast.data.schema import EVENT_COLUMNS, EVENT_SCHEMA, ITEM, LINE, TS, USER

EVENTS, ITEMS, REPORT = "events.parquet", "items.parquet", "report.json"


@dataclass
class Converted:
    events: Path
    items: Path | None
    report: ReadReport
    chunks: int


def convert(
    raw: str | Path,
    out_dir: str | Path,
    *,
    items: str | Path | None = None,
    format: str | None = None,
    strict: bool = False,
    columns: ColumnMap | None = None,
    chunk_lines: int = DEFAULT_CHUNK_LINES,
) -> Converted:
    """Write `out_dir/events.parquet` (+ `items.parquet` from `items`) and `report.json`."""
    out = Path(out_dir)
    staging = out / "_staging"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    report = ReadReport(source=str(raw), format="")
    chunks = 0
    for chunk in iter_event_chunks(raw, format=format, strict=strict, columns=columns,
                                   chunk_lines=chunk_lines, report=report):
        chunk.select(*EVENT_COLUMNS, LINE).write_parquet(staging / f"part-{chunks:06d}.parquet")
        chunks += 1
    events = out / EVENTS
    _deduplicated(staging, chunks).sink_parquet(events)
    kept = pl.scan_parquet(events).select(pl.len()).collect().item()
    report.duplicates_removed = report.rows - kept
    shutil.rmtree(staging)
    items_path = None
    if items is not None:
        items_path = out / ITEMS
        read_items(items, strict=strict).items.write_parquet(items_path)
    (out / REPORT).write_text(json.dumps(report.to_dict(), indent=2, default=str))
    return Converted(events, items_path, report, chunks)


def _deduplicated(staging: Path, chunks: int) -> pl.LazyFrame:
    """One event per (user, item): the latest by ts, on equal ts the later input line."""
    if chunks == 0:
        return pl.LazyFrame(schema=EVENT_SCHEMA)
    return (
        pl.scan_parquet(staging / "*.parquet")
        .sort([TS, LINE])
        .unique(subset=[USER, ITEM], keep="last", maintain_order=True)
        .sort([TS, USER, ITEM])
        .select(EVENT_COLUMNS)
    )
