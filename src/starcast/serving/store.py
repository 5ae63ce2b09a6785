"""The embedded state store: SQLite in WAL mode, standard library only.

It holds every event received and, per user and per item, what predicting needs without
replaying history: counts, residual sums, the last event, the user's recurrent state (h, c) and
the item's latest residuals. A request's changes are one transaction: committed before the
answer, so an acknowledged event survives a killed process.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from starcast.errors import StarcastError

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, event_id TEXT UNIQUE, user TEXT NOT NULL,
    item TEXT NOT NULL, rating REAL NOT NULL, ts INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS events_by_user ON events (user, item);
CREATE INDEX IF NOT EXISTS events_by_item ON events (item);
CREATE TABLE IF NOT EXISTS users (
    user TEXT PRIMARY KEY, n INTEGER NOT NULL, last_ts INTEGER, last_item TEXT,
    resid_sum REAL NOT NULL, h BLOB, c BLOB, rated TEXT NOT NULL, rating_sum REAL NOT NULL,
    rating_sq REAL NOT NULL);
CREATE TABLE IF NOT EXISTS items (
    item TEXT PRIMARY KEY, n INTEGER NOT NULL, last_ts INTEGER, resid_sum REAL NOT NULL,
    recent TEXT NOT NULL, recent_sum REAL NOT NULL, recent_n INTEGER NOT NULL);
"""


SEP = "\x1f"  # between the items a user rated (ASCII unit separator; refused inside ids)


class StoreBusy(StarcastError):
    """Another process kept the state file locked for longer than the store waits."""


@dataclass
class UserState:
    n: int = 0
    last_ts: int | None = None
    last_item: str | None = None
    resid_sum: float = 0.0
    h: np.ndarray | None = None  # float32 [hidden]; None: the model's learned start state
    c: np.ndarray | None = None
    rated: str = ""  # every item the user rated, SEP-joined: the pair check costs no query
    rating_sum: float = 0.0  # the sum of the user's ratings, and of their squares (the spread
    rating_sq: float = 0.0  # of the user's star probabilities, models.stars)

    def rated_among(self, wrapped: list[str]) -> list[bool]:
        """Whether the user rated each of these items, given as SEP + item + SEP."""
        padded = f"{SEP}{self.rated}{SEP}"
        return [item in padded for item in wrapped]

    def add_rated(self, item: str) -> None:
        refuse_reserved([item])
        self.rated = f"{self.rated}{SEP}{item}" if self.rated else item


def refuse_reserved(items: Iterable[str]) -> None:
    """Item ids may not contain SEP, which separates a user's rated items."""
    for item in items:
        if SEP in item:
            raise StarcastError(f"item id {item!r} contains the reserved character \\x1f")


@dataclass
class ItemState:
    n: int = 0
    last_ts: int | None = None
    resid_sum: float = 0.0
    recent: list[tuple[int, int, float]] = field(default_factory=list)  # (ts, seq, residual)


@dataclass
class ItemSummary:
    """What a prediction reads of an item: no list of recent events to decode."""

    n: int = 0
    last_ts: int | None = None
    resid_sum: float = 0.0
    recent_sum: float = 0.0
    recent_n: int = 0


class Store:
    """One SQLite file; a lock serialises writers (SQLite allows one at a time anyway)."""

    def __init__(self, path: str | Path, busy_seconds: float = 30.0) -> None:
        """`busy_seconds`: how long a write waits for another process's transaction (server
        workers share the file) before giving up with `StoreBusy`."""
        self.path, self.busy_seconds = Path(path), busy_seconds
        self.lock = threading.Lock()
        self._local = threading.local()
        if not self.path.parent.is_dir():
            raise StarcastError(f"{self.path}: no such directory {self.path.parent}")
        if self.path.exists() and not os.access(self.path, os.W_OK):
            raise StarcastError(f"{self.path}: the state file is read-only; the service writes "
                                "every event it receives (make it writable or use another)")
        try:
            with self.lock:
                self.db.executescript(SCHEMA)  # (executescript commits on its own)
        except sqlite3.DatabaseError as err:  # a text file, a truncated database...
            raise StarcastError(f"{self.path}: not a starcast state file ({err})") from None
        users = {row[1] for row in self.db.execute("PRAGMA table_info(users)")}
        items = {row[1] for row in self.db.execute("PRAGMA table_info(items)")}
        if not {"rated", "rating_sq"} <= users or "recent_sum" not in items:
            raise StarcastError(f"{self.path}: a state file from an earlier starcast (no rated "
                                "items or rating sums per user, or no recent sums per item); "
                                "create a new one with `starcast state init`")

    @property
    def db(self) -> sqlite3.Connection:
        """This thread's connection (SQLite connections are not shared across threads)."""
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False,
                                   timeout=self.busy_seconds)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")  # WAL: durable against a killed process
            self._local.conn = conn
        return conn

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """A write transaction under the lock: all of it is committed, or none."""
        with self.lock:
            db = self.db
            try:
                db.execute("BEGIN IMMEDIATE")
            except sqlite3.OperationalError as err:
                if "locked" not in str(err) and "busy" not in str(err):
                    raise
                # another process (a server worker) held it longer than we wait
                raise StoreBusy(f"{self.path}: {err} after {self.busy_seconds:g} s") from err
            try:
                yield db
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")

    def bind(self, model: str) -> None:
        """Tie the file to one model (its version): states computed by another model's
        network are not this model's states, so a file holding them is refused by name."""
        with self.transaction() as db:
            row = db.execute("SELECT value FROM meta WHERE key = 'model'").fetchone()
            if row is None:
                db.execute("INSERT INTO meta VALUES ('model', ?)", (model,))
            elif row[0] != model:
                raise StarcastError(f"{self.path}: states of model {row[0]}, not of {model}; "
                                    "start a new state file (`starcast state init`) for it")

    def meta(self, key: str) -> str | None:
        row = self.db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return row[0] if row else None

    def users(self, names: Iterable[str], cells: bool = True) -> dict[str, UserState]:
        """The users' states; `cells=False` leaves out the cell state `c` and the last
        item, which only applying an event needs (a prediction reads `h`)."""
        names = list(dict.fromkeys(names))
        rows = self._select("users", "user", names, "n, last_ts, resid_sum, rated, rating_sum, "
                            "rating_sq, h" + (", c, last_item" if cells else ""))
        stored = [name for name in names if name in rows and rows[name][6] is not None]
        # the states of all users in one decode: rows of matrices, not an array per blob
        h = _matrix([rows[name][6] for name in stored])
        c = _matrix([rows[name][7] for name in stored]) if cells else None
        out = {}
        for name in names:
            row = rows.get(name)
            out[name] = UserState() if row is None else UserState(
                row[0], row[1], row[8] if cells else None, row[2], rated=row[3],
                rating_sum=row[4], rating_sq=row[5])
        for k, name in enumerate(stored):
            out[name].h = h[k]
            if cells:
                out[name].c = c[k]
        return out

    def items(self, names: Iterable[str]) -> dict[str, ItemState]:
        names = list(dict.fromkeys(names))
        rows = self._select("items", "item", names, "n, last_ts, resid_sum, recent")
        out = {}
        for name in names:
            row = rows.get(name)
            out[name] = ItemState() if row is None else ItemState(
                row[0], row[1], row[2], [tuple(r) for r in json.loads(row[3])]
            )
        return out

    def item_summaries(self, names: Iterable[str]) -> dict[str, ItemSummary]:
        names = list(dict.fromkeys(names))
        rows = self._select("items", "item", names, "n, last_ts, resid_sum, recent_sum, recent_n")
        return {name: ItemSummary(*rows[name]) if name in rows else ItemSummary()
                for name in names}

    def events_of(self, users: Iterable[str] = (), items: Iterable[str] = ()) -> list[tuple]:
        """(user, item, rating, ts) of every stored event of these users or items."""
        out = []
        for column, names in (("user", set(users)), ("item", set(items))):
            for name in names:
                out += self.db.execute(
                    f"SELECT seq, user, item, rating, ts FROM events WHERE {column} = ?", (name,)
                ).fetchall()
        unique = {row[0]: row[1:] for row in out}
        return [unique[k] for k in sorted(unique)]

    def _select(self, table: str, key: str, names: list[str], columns: str) -> dict[str, tuple]:
        rows = {}
        for start in range(0, len(names), 5000):  # SQLite caps bound parameters (32766)
            chunk = names[start : start + 5000]
            marks = ",".join("?" * len(chunk))
            query = f"SELECT {key}, {columns} FROM {table} WHERE {key} IN ({marks})"
            rows |= {r[0]: r[1:] for r in self.db.execute(query, chunk)}
        return rows


def write_user(db: sqlite3.Connection, name: str, state: UserState) -> None:
    db.execute(
        "INSERT OR REPLACE INTO users VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (name, state.n, state.last_ts, state.last_item, state.resid_sum,
         _blob(state.h), _blob(state.c), state.rated, state.rating_sum, state.rating_sq),
    )


def write_item(db: sqlite3.Connection, name: str, state: ItemState) -> None:
    db.execute(
        "INSERT OR REPLACE INTO items VALUES (?, ?, ?, ?, ?, ?, ?)",
        (name, state.n, state.last_ts, state.resid_sum, json.dumps(state.recent),
         sum(r[2] for r in state.recent), len(state.recent)),
    )


def _blob(values: np.ndarray | None) -> bytes | None:
    return None if values is None else np.asarray(values, dtype=np.float32).tobytes()


def _matrix(blobs: list[bytes]) -> np.ndarray:
    """[len(blobs), hidden] float32, writable, from equal-sized blobs."""
    if not blobs:
        return np.zeros((0, 0), dtype=np.float32)
    return np.frombuffer(b"".join(blobs), dtype=np.float32).reshape(len(blobs), -1).copy()
