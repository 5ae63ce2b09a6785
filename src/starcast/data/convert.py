"""A raw review dump, however large, into a Parquet event table (and item features) on disk.

Chunks of the input are parsed and written one at a time, so the raw text is never held in
memory; de-duplication then runs over the staged Parquet with Polars' streaming engine, a group
of users at a time when there are many events. The result is what `read_events` returns for the
same file (same rows, same de-duplication rule), sorted by ts (by (ts, user, item) when it is
one group), with the read report beside it.
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
from starcast.errors import DataError

EVENTS, ITEMS, REPORT = "events.parquet", "items.parquet", "report.json"
GROUP_EVENTS = 2_000_000  # de-duplicated at once: about 0.8 GB at the peak (benchmarks/scale)


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
    group_events: int = GROUP_EVENTS,
    overwrite: bool = False,
    allow_truncated: bool = False,
) -> Converted:
    """Write `out_dir/events.parquet` (+ `items.parquet` from `items`) and `report.json`.

    `out_dir` must be missing or empty unless `overwrite` (then what a conversion writes is
    replaced; nothing else there is touched). `group_events`: about how many events are
    de-duplicated at once (the step's memory).
    """
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise DataError("not a directory", file=str(out))
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise DataError("the output folder is not empty; choose another or pass --overwrite",
                        file=str(out))
    staging = out / "_staging"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    report = ReadReport(source=str(raw), format="", allow_truncated=allow_truncated)
    chunks = 0
    for chunk in iter_event_chunks(raw, format=format, strict=strict, columns=columns,
                                   chunk_lines=chunk_lines, report=report):
        chunk.select(*EVENT_COLUMNS, LINE).write_parquet(staging / f"part-{chunks:06d}.parquet")
        chunks += 1
    events = out / EVENTS
    _write_deduplicated(staging, chunks, -(-report.rows // group_events), events)
    kept = pl.scan_parquet(events).select(pl.len()).collect().item()
    report.duplicates_removed = report.rows - kept
    shutil.rmtree(staging)
    items_path = None
    if items is not None:
        items_path = out / ITEMS
        read_items(items, strict=strict, allow_truncated=allow_truncated).items.write_parquet(
            items_path)
    (out / REPORT).write_text(json.dumps(report.to_dict(), indent=2, default=str))
    return Converted(events, items_path, report, chunks)


def _write_deduplicated(staging: Path, chunks: int, groups: int, target: Path) -> None:
    """One event per (user, item), sorted by ts, into `target`.

    Users are split into `groups` by a hash, and each group is de-duplicated on its own, so
    that step holds one group's events; the sorted groups are then merged by ts, streaming.
    Ties in ts are ordered by (user, item) within a group.
    """
    if chunks == 0:
        pl.DataFrame(schema=EVENT_SCHEMA).write_parquet(target)
        return
    staged = pl.scan_parquet(staging / "*.parquet")
    if groups <= 1:
        _deduplicated(staged).sink_parquet(target)
        return
    (staging / "groups").mkdir()
    pieces = [staging / "groups" / f"{k:04d}.parquet" for k in range(groups)]
    for k, piece in enumerate(pieces):
        _deduplicated(staged.filter(pl.col(USER).hash() % groups == k)).sink_parquet(piece)
    merged = pl.scan_parquet(pieces[0])
    for piece in pieces[1:]:
        merged = merged.merge_sorted(pl.scan_parquet(piece), key=TS)
    merged.sink_parquet(target)


def _deduplicated(events: pl.LazyFrame) -> pl.LazyFrame:
    """The latest event of each (user, item) by ts, on equal ts the later input line."""
    return (
        events.sort([TS, LINE])
        .unique(subset=[USER, ITEM], keep="last", maintain_order=True)
        .sort([TS, USER, ITEM])
        .select(EVENT_COLUMNS)
    )
