"""The canonical event and item-feature tables every reader produces."""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl

USER, ITEM, RATING, TS = "user", "item", "rating", "ts"
EVENT_COLUMNS: tuple[str, ...] = (USER, ITEM, RATING, TS)
TEXT_COLUMNS: tuple[str, ...] = ("text", "summary")
EVENT_SCHEMA: dict[str, pl.DataType] = {
    USER: pl.Utf8(),
    ITEM: pl.Utf8(),
    RATING: pl.Float64(),
    TS: pl.Int64(),
}
QUERY_COLUMNS: tuple[str, ...] = (USER, ITEM, TS)

ITEM_SCHEMA: dict[str, pl.DataType] = {
    ITEM: pl.Utf8(),
    "category": pl.List(pl.Utf8()),
    "brand": pl.Utf8(),
    "price": pl.Float64(),
    "title": pl.Utf8(),
}

# Internal column carrying the input line (or row) number; breaks ties in de-duplication.
LINE = "_line"


@dataclass(frozen=True)
class RatingScale:
    """The closed interval ratings live in."""

    low: float = 1.0
    high: float = 5.0

    def contains(self, rating: float) -> bool:
        return self.low <= rating <= self.high

    @property
    def stars(self) -> int:
        """How many whole stars the scale holds (5 for 1..5)."""
        return int(round(self.high - self.low)) + 1


def empty_events() -> pl.DataFrame:
    return pl.DataFrame(schema=EVENT_SCHEMA)


def dedupe_events(events: pl.DataFrame) -> tuple[pl.DataFrame, int]:
    """Keep one event per (user, item): the latest by ts, on equal ts the later input row.

    Input order stands for line order unless the frame carries a `_line` column.
    Returns the surviving events in input order and how many were removed.
    """
    order = LINE if LINE in events.columns else None
    frame = events if order else events.with_row_index(LINE)
    kept = (
        frame.sort([TS, LINE])
        .unique(subset=[USER, ITEM], keep="last", maintain_order=True)
        .sort(LINE)
    )
    if order is None:
        kept = kept.drop(LINE)
    return kept, events.height - kept.height
