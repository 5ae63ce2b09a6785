"""Every customer's state kept current as reviews arrive, and predictions from it.

For a sequence model (`lstm`, `transformer`) a new review advances its customer's state by one
step (the LSTM's cell, or the attention window of the latest events) and updates
the customer's and the item's residual sums: no retraining, no replay. A prediction then reads
the stored state, exactly what `starcast predict` computes from the same history. Where the
stored state is not that (a query earlier than events already applied, or about a pair already
rated, which the visibility rule hides), the query is answered the batch way from the stored
events instead. Other models always answer the batch way from the stored events.
"""

from __future__ import annotations

import sqlite3
import time
from dataclasses import dataclass

import numpy as np
import polars as pl
import torch

from starcast.data.schema import EVENT_SCHEMA, ITEM, RATING, TS, USER
from starcast.errors import StarcastError
from starcast.features.sequences import DAY, RECENT, RESIDUAL, training_sequences
from starcast.features.vocab import COLD
from starcast.forecaster import Forecaster
from starcast.models.sequence import SequenceModel
from starcast.models.stars import StarContext
from starcast.serving.store import (
    SEP,
    ItemState,
    ItemSummary,
    Store,
    UserState,
    refuse_reserved,
    write_item,
    write_user,
)
from starcast.training.trainer import length_batches


class EventRejected(StarcastError):
    """An event that cannot be applied now (409): the request changes nothing."""

    def __init__(self, index: int, reason: str) -> None:
        super().__init__(f"events[{index}]: {reason}")
        self.index, self.reason = index, reason


class EventInvalid(EventRejected):
    """An event that can never be applied as given (422): the request changes nothing."""


class UnknownEvent(StarcastError):
    """No stored event has this event_id (404)."""


@dataclass
class Event:
    user: str
    item: str
    rating: float
    ts: int
    event_id: str | None = None


@dataclass
class Answers:
    """Per query: the prediction, the cold flag and, for a model with star probabilities,
    those and the balanced reading (as `Forecaster.predict` gives them)."""

    prediction: np.ndarray
    cold: np.ndarray
    probabilities: np.ndarray | None = None
    balanced: np.ndarray | None = None

    @classmethod
    def of(cls, frame: pl.DataFrame) -> Answers:
        """From a `Forecaster.predict` frame."""
        stars = [c for c in frame.columns if c[0] == "p" and c[1:].isdigit()]
        balanced = frame["balanced"].to_numpy().copy() if "balanced" in frame.columns else None
        return cls(frame["prediction"].to_numpy().copy(), frame["cold"].to_numpy().copy(),
                   frame.select(stars).to_numpy() if stars else None, balanced)

    def rows(self, start: int, stop: int) -> Answers:
        """The answers of queries start..stop-1."""
        cut = lambda a: None if a is None else a[start:stop]  # noqa: E731
        return Answers(self.prediction[start:stop], self.cold[start:stop],
                       cut(self.probabilities), cut(self.balanced))

    def put(self, rows: np.ndarray, other: Answers) -> None:
        """Take `other`'s answers for these rows."""
        self.prediction[rows], self.cold[rows] = other.prediction, other.cold
        if self.probabilities is not None:
            self.probabilities[rows] = other.probabilities
        if self.balanced is not None:
            self.balanced[rows] = other.balanced

    def frame(self, users: list[str], items: list[str], ts: np.ndarray) -> pl.DataFrame:
        """The `Forecaster.predict` frame: user, item, ts, prediction, balanced, cold, p1..pK."""
        columns = {USER: users, ITEM: items, TS: ts, "prediction": self.prediction}
        if self.balanced is not None:
            columns["balanced"] = self.balanced
        columns["cold"] = self.cold
        if self.probabilities is not None:
            columns |= {f"p{k + 1}": self.probabilities[:, k]
                        for k in range(self.probabilities.shape[1])}
        return pl.DataFrame(columns, schema_overrides={USER: pl.Utf8, ITEM: pl.Utf8,
                                                       TS: pl.Int64})


FUTURE_TOLERANCE = 86_400  # seconds an event's ts may lie ahead of the server's clock


class OnlineForecaster:
    """Keeps every customer's state current as events arrive.

    One rule with batch predict (`dedupe_events`): a user's later rating of an item replaces
    the earlier one. An event more than `future_tolerance` seconds ahead of the clock is
    refused: stored, it would lock its user (every real event after it is "older") and send
    every query on its item down the batch path.
    """

    def __init__(self, forecaster: Forecaster, store: Store,
                 future_tolerance: int = FUTURE_TOLERANCE) -> None:
        self.forecaster, self.store = forecaster, store
        self.future_tolerance = future_tolerance
        model = forecaster.model_
        # the item-side window is not kept incrementally: that configuration answers in batch
        self.recurrent = isinstance(model, SequenceModel) and model.config.item_window == 0
        self.model = model
        if self.recurrent:  # per-event lookups without a DataFrame round trip
            model.net_.eval()
            self._index = {name: k + 1 for k, name in enumerate(model.items_.ids)}
            self._side = {name: k + 1 for k, name in enumerate(model.side_.items.ids)}
            self._trained_users = set(model.users_.ids)

    # ---- events -------------------------------------------------------------------------

    def apply(self, events: list[Event]) -> dict[str, int]:
        """Store and apply `events` in one transaction; retries of known event_ids are skipped."""
        latest = time.time() + self.future_tolerance
        for index, event in enumerate(events):
            if event.ts > latest:
                raise EventInvalid(index, f"ts {event.ts} is more than {self.future_tolerance} s "
                                   "ahead of the server's clock (milliseconds instead of "
                                   "seconds?)")
        with self.store.transaction() as db:
            fresh = self._new_events(db, events)
            users = self.store.users(e.user for _, e in fresh)
            items = self.store.items(e.item for _, e in fresh)
            replay, steps, rerated = set(), {}, set()
            for index, event in fresh:
                user = users[event.user]
                if user.last_ts is not None and event.ts < user.last_ts:
                    raise EventRejected(index, f"ts {event.ts} is older than user "
                                        f"{event.user!r}'s latest event ({user.last_ts}); "
                                        f"POST /v1/users/{{user}}/rebuild after a backfill")
                if user.last_ts == event.ts and event.item < (user.last_item or ""):
                    replay.add(event.user)  # same second, earlier in (ts, item) order
                if user.rated_among([f"{SEP}{event.item}{SEP}"])[0]:
                    rerated.add((event.user, event.item))
                seq = db.execute(
                    "INSERT INTO events (event_id, user, item, rating, ts) VALUES (?, ?, ?, ?, ?)",
                    (event.event_id, event.user, event.item, event.rating, event.ts),
                ).lastrowid
                self._advance(user, items[event.item], event, seq, steps)
            self._step_all(users, steps)
            for name, item in rerated:  # the latest rating of the pair replaces the others
                db.execute("DELETE FROM events WHERE user = ? AND item = ? AND seq < (SELECT "
                           "MAX(seq) FROM events WHERE user = ? AND item = ?)",
                           (name, item, name, item))
                replay.add(name)
                items[item] = self._item_replay(db, item)
            for name in replay:
                users[name] = self._replay(db, name)
            for name, state in users.items():
                write_user(db, name, state)
            for name, state in items.items():
                write_item(db, name, state)
        return {"applied": len(fresh), "duplicates": len(events) - len(fresh)}

    def _new_events(self, db: sqlite3.Connection, events: list[Event]) -> list[tuple[int, Event]]:
        """(index, event) of the events not applied before (by event_id), in order."""
        fresh, ids = [], {}
        for index, event in enumerate(events):
            if event.event_id is None:
                fresh.append((index, event))
                continue
            known = ids.get(event.event_id) or db.execute(
                "SELECT user, item, rating, ts FROM events WHERE event_id = ?", (event.event_id,)
            ).fetchone()
            if known is None:
                ids[event.event_id] = (event.user, event.item, event.rating, event.ts)
                fresh.append((index, event))
            elif tuple(known) != (event.user, event.item, event.rating, event.ts):
                raise EventRejected(index, f"event_id {event.event_id!r} was used for another "
                                    "event")
        return fresh

    def _advance(
        self, user: UserState, item: ItemState, event: Event, seq: int, steps: dict
    ) -> None:
        """Counts and sums now; the encoder steps are collected, to run once per request."""
        resid = self._residual(event.item, event.rating)
        if self.recurrent:
            gap = np.log1p(max(event.ts - user.last_ts, 0) / DAY) if user.n else 0.0
            steps.setdefault(event.user, []).append(
                (self._index.get(event.item, COLD), self._side.get(event.item, 0),
                 event.rating, gap)
            )
        user.n, user.last_ts, user.last_item = user.n + 1, event.ts, event.item
        user.add_rated(event.item)
        user.resid_sum += resid
        user.rating_sum += event.rating
        user.rating_sq += event.rating**2
        item.n += 1
        item.last_ts = event.ts if item.last_ts is None else max(item.last_ts, event.ts)
        item.resid_sum += resid
        item.recent = sorted([*item.recent, (event.ts, seq, resid)])[-RECENT:]

    def _residual(self, item: str, rating: float) -> float:
        if not self.recurrent:
            return 0.0
        return float(rating - self.model.mu_ - self.model.b_item_[self._index.get(item, COLD)])

    @torch.no_grad()
    def _step_all(self, users: dict[str, UserState], steps: dict[str, list]) -> None:
        """Advance every user by its new events: one encoder call for the request."""
        if not steps:
            return
        names = list(steps)
        length = torch.tensor([len(steps[n]) for n in names])
        padded = np.zeros((len(names), int(length.max()), 4))
        for row, name in enumerate(names):
            padded[row, : len(steps[name])] = steps[name]
        starts = [self._start(users[n]) for n in names]
        h, c = self.model.net_.advance(
            torch.as_tensor(padded[..., 0], dtype=torch.long),
            torch.as_tensor(padded[..., 1], dtype=torch.long),
            torch.as_tensor(padded[..., 2], dtype=torch.float32),
            torch.as_tensor(padded[..., 3], dtype=torch.float32),
            length,
            (torch.stack([h for h, _ in starts]), torch.stack([c for _, c in starts])),
        )
        for row, name in enumerate(names):
            users[name].h, users[name].c = h[row].numpy().copy(), c[row].numpy().copy()

    def _start(self, user: UserState) -> tuple[torch.Tensor, torch.Tensor]:
        if user.h is None:
            h, c = self.model.net_.encoder.start(1)
            return h[0].detach(), c[0].detach()
        return torch.from_numpy(user.h), torch.from_numpy(user.c)

    # ---- rebuild and batch initialisation ----------------------------------------------------

    def rebuild(self, user: str) -> dict:
        """Replay the user's stored events in (ts, item) order into a fresh state."""
        with self.store.transaction() as db:
            write_user(db, user, self._replay(db, user))
        return self.user(user)

    def delete(self, event_id: str) -> dict:
        """Remove a stored event (a mistake: a wrong ts, say) and replay its user and item."""
        with self.store.transaction() as db:
            row = db.execute("SELECT user, item FROM events WHERE event_id = ?",
                             (event_id,)).fetchone()
            if row is None:
                raise UnknownEvent(f"no stored event has event_id {event_id!r}")
            user, item = row
            db.execute("DELETE FROM events WHERE event_id = ?", (event_id,))
            write_user(db, user, self._replay(db, user))
            write_item(db, item, self._item_replay(db, item))
        return {"deleted": event_id, "user": user, "item": item}

    def _item_replay(self, db: sqlite3.Connection, item: str) -> ItemState:
        """The item's state from its stored events, read in SQL: counts and sums, and only
        the RECENT latest events (a popular item has thousands; every residual of one item
        is its rating less the same mean and bias)."""
        n, total, last = db.execute("SELECT COUNT(*), SUM(rating), MAX(ts) FROM events "
                                    "WHERE item = ?", (item,)).fetchone()
        if not n:
            return ItemState()
        latest = db.execute("SELECT ts, seq, rating FROM events WHERE item = ? ORDER BY ts "
                            "DESC, seq DESC LIMIT ?", (item, RECENT)).fetchall()
        offset = self._residual(item, 0.0)  # rating 0: minus the mean and the item's bias
        resid = total + n * offset if self.recurrent else 0.0
        recent = [(ts, seq, rating + offset if self.recurrent else 0.0)
                  for ts, seq, rating in reversed(latest)]
        return ItemState(n, last, float(resid), recent)

    def _replay(self, db: sqlite3.Connection, user: str, without: str | None = None) -> UserState:
        """The user's state from the stored events (less the one of item `without`)."""
        rows = db.execute(
            "SELECT user, item, rating, ts FROM events WHERE user = ? AND item IS NOT ? "
            "ORDER BY ts, item, seq", (user, without),
        ).fetchall()
        states = self._final_states(_frame(rows))
        return states.get(user, UserState())

    def initialise(self, history: pl.DataFrame) -> int:
        """Store `history` and compute every user's and item's state from it in batch."""
        events = history.select(USER, ITEM, RATING, TS).sort([TS, USER, ITEM])
        with self.store.transaction() as db:
            if db.execute("SELECT COUNT(*) FROM events").fetchone()[0]:
                raise StarcastError(f"{self.store.path} already holds events; start a new file")
            db.executemany("INSERT INTO events (user, item, rating, ts) VALUES (?, ?, ?, ?)",
                           events.iter_rows())
            for name, state in self._final_states(events).items():
                write_user(db, name, state)
            for name, state in self._item_states(events).items():
                write_item(db, name, state)
        return events.height

    def _final_states(self, events: pl.DataFrame) -> dict[str, UserState]:
        """Each user's state after all of `events`, computed in batch (one encoder pass each)."""
        if events.is_empty():
            return {}
        indexed = self._indexed(events).sort([USER, TS, ITEM])
        refuse_reserved(indexed.filter(pl.col(ITEM).str.contains(SEP, literal=True))[ITEM])
        summary = indexed.group_by(USER, maintain_order=True).agg(
            pl.len().alias("n"), pl.col(TS).last(), pl.col(ITEM).last(),
            pl.col(RESIDUAL).sum() if self.recurrent else pl.lit(0.0).alias(RESIDUAL),
            pl.col(ITEM).str.join(SEP).alias("rated"),
            pl.col(RATING).sum().alias("rating_sum"), (pl.col(RATING) ** 2).sum().alias("sq"),
        )
        h = c = [None] * summary.height
        if self.recurrent:
            seqs = training_sequences(indexed, np.zeros((indexed.height, 1), np.float32),
                                      max_len=indexed.height + 1)
            h, c = _run_to_end(self.model.net_, seqs)
        return {
            row[0]: UserState(row[1], row[2], row[3], row[4], h[k], c[k], row[5], row[6], row[7])
            for k, row in enumerate(summary.iter_rows())
        }

    def _item_states(self, events: pl.DataFrame) -> dict[str, ItemState]:
        # inserted into an empty table in this order: the event of row r got seq r + 1
        indexed = self._indexed(events.with_row_index("_row", offset=1))
        out = {}
        for item, part in indexed.sort([ITEM, TS, "_row"]).group_by(ITEM, maintain_order=True):
            resid = part[RESIDUAL].to_list() if self.recurrent else [0.0] * part.height
            ts, rows = part[TS].to_list(), part["_row"].to_list()
            recent = list(zip(ts, rows, resid, strict=True))
            out[item[0]] = ItemState(part.height, max(ts), float(sum(resid)), recent[-RECENT:])
        return out

    def _indexed(self, events: pl.DataFrame) -> pl.DataFrame:
        return self.model._with_index(events) if self.recurrent else events

    # ---- reading -------------------------------------------------------------------------

    def user(self, user: str) -> dict:
        state = self.store.users([user])[user]
        known = self.model.users_.encode(pl.Series([user], dtype=pl.Utf8))[0] != COLD
        return {"user": user, "events": state.n, "last_ts": state.last_ts,
                "cold": bool(state.n == 0 and not known)}

    def predict(self, queries: pl.DataFrame) -> pl.DataFrame:
        """One row per query, in order, as `Forecaster.predict` with the stored history."""
        users, items = queries[USER].to_list(), queries[ITEM].to_list()
        ts = queries[TS].to_numpy()
        return self.answer(users, items, ts).frame(users, items, ts)

    def answer(self, user_ids: list[str], item_ids: list[str], ts: np.ndarray) -> Answers:
        """`predict`'s answers as arrays, with no DataFrame on the way: a 1-query request is
        made of fixed costs, and each DataFrame operation is one of them."""
        if not self.recurrent:
            return Answers.of(self._batch(_query_frame(user_ids, item_ids, ts)))
        names_u, names_i = list(dict.fromkeys(user_ids)), list(dict.fromkeys(item_ids))
        users = self.store.users(names_u, cells=False)
        items = self.store.item_summaries(names_i)
        u_states, i_states = [users[n] for n in names_u], [items[n] for n in names_i]
        pos_u = {n: k for k, n in enumerate(names_u)}
        pos_i = {n: k for k, n in enumerate(names_i)}
        u = np.array([pos_u[n] for n in user_ids], dtype=np.int64)
        i = np.array([pos_i[n] for n in item_ids], dtype=np.int64)
        index = np.array([self._index.get(n, COLD) for n in item_ids], dtype=np.int64)
        out = self._flagged(names_u, u_states, i_states, u, i, index, user_ids, item_ids, ts)
        current = ((ts >= np.array([_last(s) for s in u_states])[u])
                   & (ts >= np.array([_last(s) for s in i_states])[i]))
        rated = current & _rated(user_ids, item_ids, users)
        if rated.any():  # the stored states hold the query's own pair, which it may not see
            rows = np.flatnonzero(rated)
            out.put(rows, self._without_own_pair(rows, user_ids, item_ids, ts, index, items))
        if not current.all():  # history after the query: the stored states are too new
            rows = np.flatnonzero(~current)
            asked = _query_frame([user_ids[r] for r in rows], [item_ids[r] for r in rows],
                                 ts[rows])
            out.put(rows, Answers.of(self._batch(asked)))
        return out

    def _flagged(self, names_u: list[str], u_states: list[UserState],
                 i_states: list[ItemSummary], u: np.ndarray, i: np.ndarray, index: np.ndarray,
                 user_ids: list[str], item_ids: list[str], ts: np.ndarray) -> Answers:
        """`_served`, with the cold flags: a new item, or a user with no events who was not
        in training."""
        out = self._served(u_states, i_states, u, i, index, user_ids, item_ids, ts)
        unknown = np.array([s.n == 0 and n not in self._trained_users
                            for n, s in zip(names_u, u_states, strict=True)], dtype=bool)
        out.cold = (index == COLD) | unknown[u]
        return out

    def _without_own_pair(self, rows: np.ndarray, user_ids: list[str], item_ids: list[str],
                          ts: np.ndarray, index: np.ndarray,
                          items: dict[str, ItemSummary]) -> Answers:
        """Queries on pairs the user already rated: the user's state replayed without that
        event (one encoder pass), the item's summary less it, rather than a batch prediction
        (about 50 ms a query: the p99 of single predictions)."""
        db = self.store.db
        users, asked = [user_ids[r] for r in rows], [item_ids[r] for r in rows]
        u_states, i_states = [], []
        for user, item in zip(users, asked, strict=True):
            own, window = (
                [self._residual(item, rating) for (rating,) in db.execute(sql, (item, user))]
                for sql in (_OWN, _OTHERS_LATEST))
            u_states.append(self._replay(db, user, without=item))
            i_states.append(_less(items[item], own, window))
        at = np.arange(len(rows))
        return self._flagged(users, u_states, i_states, at, at, index[rows], users, asked,
                             ts[rows])

    def _batch(self, queries: pl.DataFrame) -> pl.DataFrame:
        rows = self.store.events_of(users=queries[USER], items=queries[ITEM])
        return self.forecaster.predict(_frame(rows), queries)

    @torch.no_grad()
    def _served(
        self, u_states: list[UserState], i_states: list[ItemSummary], u: np.ndarray,
        i: np.ndarray, index: np.ndarray, user_ids: list[str], item_ids: list[str],
        ts: np.ndarray,
    ) -> Answers:
        """Predictions (and probabilities) of the head over the stored states, for query k of
        user `u_states[u[k]]` and item `i_states[i[k]]` (model index `index[k]`); the cold
        flags are the caller's."""
        net = self.model.net_
        start = net.encoder.empty().detach().numpy()
        h = torch.from_numpy(np.stack([start if s.h is None else s.h for s in u_states]))
        per_user = np.array([[s.resid_sum, s.n, s.last_ts or 0] for s in u_states], dtype=float)
        per_item = np.array([[s.resid_sum, s.n, s.recent_sum, s.recent_n] for s in i_states],
                            dtype=float)
        feats = torch.as_tensor(np.column_stack([per_user[u, :2], per_item[i]]),
                                dtype=torch.float32)
        since = np.maximum(ts - per_user[u, 2], 0) / DAY
        gap = torch.as_tensor(np.where(per_user[u, 1] > 0, np.log1p(since), 0.0),
                              dtype=torch.float32)
        side = torch.tensor([self._side.get(n, 0) for n in item_ids])
        emb, bias = net.item_representation(torch.from_numpy(index), side)
        mean, probs = net.head(h[torch.from_numpy(u)], emb, bias, feats, gap)
        point = mean.double().numpy()
        if hasattr(self.model, "blend_"):  # every stored event of the user is visible here
            point = self.model.blend_.apply(point, user_ids, item_ids, ts, per_user[u, 1])
        scale = self.forecaster.scale
        point = np.clip(point, scale.low, scale.high)
        stars = None if probs is None else self.model.own_stars(probs.double().numpy())
        if stars is None and self.model.stars_ is not None:
            sums = np.array([[s.rating_sum, s.rating_sq] for s in u_states], dtype=float)
            context = StarContext(per_user[u, 1], index == COLD, sums[u, 0], sums[u, 1])
            stars = self.model.stars_.probabilities(point, context)
        balanced = None if stars is None else self.model.costs_.balanced(stars, scale.low)
        return Answers(point, np.zeros(len(point), dtype=bool), stars, balanced)


def _query_frame(users: list[str], items: list[str], ts: np.ndarray) -> pl.DataFrame:
    return pl.DataFrame({USER: users, ITEM: items, TS: ts},
                        schema={USER: pl.Utf8, ITEM: pl.Utf8, TS: pl.Int64})


def _rated(user_ids: list[str], item_ids: list[str], users: dict[str, UserState]) -> np.ndarray:
    """Whether each user already rated its item: the queries grouped by user, one scan of the
    user's rated items per group rather than per query."""
    asked: dict[str, list[int]] = {}
    for k, name in enumerate(user_ids):
        asked.setdefault(name, []).append(k)
    out = np.zeros(len(user_ids), dtype=bool)
    for name, rows in asked.items():
        out[rows] = users[name].rated_among([f"{SEP}{item_ids[k]}{SEP}" for k in rows])
    return out


_OWN = "SELECT rating FROM events WHERE item = ? AND user = ?"
_OTHERS_LATEST = (f"SELECT rating FROM events WHERE item = ? AND user IS NOT ? "
                  f"ORDER BY ts DESC, seq DESC LIMIT {RECENT}")


def _less(item: ItemSummary, own: list[float], window: list[float]) -> ItemSummary:
    """The item as a query on its user's own events of it (residuals `own`) sees it, by
    batch predict's rule (`features.history.visible_sums`): those events taken out of the
    sums, and the recent window its latest events of other users (residuals `window`)."""
    return ItemSummary(item.n - len(own), item.last_ts, item.resid_sum - sum(own),
                       sum(window), len(window))


def _last(state: UserState | ItemSummary) -> int:
    return -(2**62) if state.last_ts is None else state.last_ts


def _frame(rows: list[tuple]) -> pl.DataFrame:
    return pl.DataFrame(rows, schema=EVENT_SCHEMA, orient="row")


@torch.no_grad()
def _run_to_end(net, seqs, batch_size: int = 256) -> tuple[list, list]:
    """The served (h, c) after the last position of every sequence, in sequence order."""
    h_out, c_out = [None] * len(seqs), [None] * len(seqs)
    for ids in length_batches(seqs, batch_size):
        batch = seqs.pad(ids, torch.device("cpu"))
        h, c = net.advance(batch["item"], batch["side"], batch["rating"], batch["gap"],
                           torch.as_tensor(seqs.lengths[ids]))
        for row, sid in enumerate(ids):
            h_out[sid], c_out[sid] = h[row].numpy().copy(), c[row].numpy().copy()
    return h_out, c_out
