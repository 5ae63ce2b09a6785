"""A data set at a glance: size, rating imbalance, activity, time span, cold-start shares."""

from __future__ import annotations

from datetime import UTC, datetime

import polars as pl

from starcast.data.report import ReadReport
from starcast.data.schema import ITEM, RATING, TS, USER
from starcast.data.splits import PROTOCOLS, split_events

QUANTILES = (0.0, 0.25, 0.5, 0.75, 0.9, 0.99, 1.0)


def inspect_events(events: pl.DataFrame, report: ReadReport | None = None) -> dict:
    """Everything `starcast data inspect` shows, as plain JSON-ready values."""
    out: dict = {"source": report.to_dict() if report else None}
    if events.is_empty():  # nothing usable: say so rather than fail on empty statistics
        return out | {"events": 0, "users": 0, "items": 0}
    out.update(
        events=events.height,
        users=events[USER].n_unique(),
        items=events[ITEM].n_unique(),
        ratings=_rating_distribution(events),
        events_per_user=_quantiles(events.group_by(USER).len()["len"]),
        events_per_item=_quantiles(events.group_by(ITEM).len()["len"]),
        time_span=_time_span(events),
        cold_start={p: cold_shares(events, p) for p in PROTOCOLS},
    )
    return out


def _rating_distribution(events: pl.DataFrame) -> dict:
    counts = events.group_by(RATING).len().sort(RATING)
    shares = {str(r): n / events.height for r, n in counts.iter_rows()}
    nonzero = counts["len"]
    return {
        "mean": float(events[RATING].mean()) if events.height else None,
        "counts": {str(r): n for r, n in counts.iter_rows()},
        "shares": shares,
        # most common class over least common: how lopsided the classes are
        "imbalance_ratio": float(nonzero.max() / nonzero.min()) if len(nonzero) else None,
    }


def _quantiles(counts: pl.Series) -> dict[str, float]:
    return {f"q{int(q * 100)}": float(counts.quantile(q, "nearest")) for q in QUANTILES} | {
        "mean": float(counts.mean())
    }


def _time_span(events: pl.DataFrame) -> dict:
    first, last = int(events[TS].min()), int(events[TS].max())
    iso = lambda t: datetime.fromtimestamp(t, UTC).date().isoformat()  # noqa: E731
    return {"first": iso(first), "last": iso(last), "days": (last - first) / 86_400}


def cold_shares(events: pl.DataFrame, protocol: str) -> dict[str, float]:
    """Share of test events whose user, item, or both never occur in train."""
    split = split_events(events, protocol)
    test, train = split.test, split.train
    if test.is_empty():
        return {"test_events": 0, "user": 0.0, "item": 0.0, "both": 0.0}
    user_cold = ~test[USER].is_in(train[USER].implode())
    item_cold = ~test[ITEM].is_in(train[ITEM].implode())
    return {
        "test_events": test.height,
        "user": float(user_cold.mean()),
        "item": float(item_cold.mean()),
        "both": float((user_cold & item_cold).mean()),
    }


def inspect_items(items: pl.DataFrame, report: ReadReport | None = None) -> dict:
    """What `starcast data inspect` shows of an item-metadata file."""
    present = {c: float(items[c].is_not_null().mean()) if items.height else 0.0
               for c in items.columns if c != ITEM}
    return {"source": report.to_dict() if report else None, "items": items.height,
            "share_with": present}


def summary_lines(facts: dict) -> list[str]:
    """The facts of `inspect_events` or `inspect_items` as a few readable lines."""
    if "events" not in facts:
        shares = ", ".join(f"{k} {v:.0%}" for k, v in facts["share_with"].items())
        return [f"{facts['items']:,} items; with {shares}"]
    if not facts["events"]:
        return ["0 usable events (the read report above says why)"]
    ratings, span = facts["ratings"], facts["time_span"]
    stars = "  ".join(f"{float(k):g}: {v:.1%}" for k, v in ratings["shares"].items())
    per_user, per_item = facts["events_per_user"], facts["events_per_item"]
    lines = [
        f"{facts['events']:,} events, {facts['users']:,} users, {facts['items']:,} items, "
        f"{span['first']} to {span['last']} ({span['days']:,.0f} days)",
        f"ratings: mean {ratings['mean']:.3f}; {stars} "
        f"(most common / least common: {ratings['imbalance_ratio']:.1f}x)",
        f"events per user: median {per_user['q50']:g}, 90% {per_user['q90']:g}, "
        f"max {per_user['q100']:g}; per item: median {per_item['q50']:g}, "
        f"90% {per_item['q90']:g}, max {per_item['q100']:g}",
    ]
    for protocol, cold in facts["cold_start"].items():
        lines.append(f"split {protocol}: {cold['test_events']:,} test events; new user "
                     f"{cold['user']:.1%}, new item {cold['item']:.1%}, both {cold['both']:.1%}")
    return lines
