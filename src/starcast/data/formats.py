"""Format names, opening (gzip transparently), line streaming and detection by content."""

from __future__ import annotations

import ast
import csv
import gzip
import io
import json
import zlib
from collections.abc import Iterable, Iterator
from itertools import islice
from pathlib import Path
from typing import IO, TypeVar

from starcast.data.report import ReadReport
from starcast.errors import DataError

AMAZON_2014 = "amazon-2014"
AMAZON_2018 = "amazon-2018"
AMAZON_2023 = "amazon-2023"
MOVIELENS_DATA = "movielens-data"
MOVIELENS_DAT = "movielens-dat"
MOVIELENS_CSV = "movielens-csv"
RECBOLE = "recbole"
CSV = "csv"
PARQUET = "parquet"
META_2014 = "amazon-meta-2014"
META_2018 = "amazon-meta-2018"
META_2023 = "amazon-meta-2023"
ITEMS_PARQUET = "items-parquet"
ITEMS_CSV = "items-csv"

EVENT_FORMATS: tuple[str, ...] = (
    AMAZON_2014,
    AMAZON_2018,
    AMAZON_2023,
    MOVIELENS_DATA,
    MOVIELENS_DAT,
    MOVIELENS_CSV,
    RECBOLE,
    CSV,
    PARQUET,
)
ITEM_FORMATS: tuple[str, ...] = (META_2014, META_2018, META_2023, ITEMS_PARQUET, ITEMS_CSV)

MOVIELENS_CSV_HEADER = ("userId", "movieId", "rating", "timestamp")
# Keys only the 2018 review dump has; the 2014 dump has the same core fields without them.
_KEYS_2018 = frozenset({"verified", "style", "vote", "image"})
_RATING_NAMES = frozenset({"rating", "overall", "stars", "score"})
_ITEM_FEATURES = frozenset({"category", "brand", "price", "title"})
_GZIP_MAGIC = b"\x1f\x8b"
_PARQUET_MAGIC = b"PAR1"
# Detection looks at this many non-blank lines, each read up to this many bytes.
_DETECT_LINES = 20
_DETECT_BYTES = 1 << 20
_BLOCK_BYTES = 1 << 22

T = TypeVar("T")


def resolve_format(path: str | Path, fmt: str | None, wanted: tuple[str, ...]) -> str:
    """The format to read `path` with: `fmt` checked against the known names, or detected."""
    known = EVENT_FORMATS + ITEM_FORMATS
    if fmt is None:
        fmt = detect_format(path)
    elif fmt not in known:
        names = ", ".join(known)
        raise DataError(f"unknown format {fmt!r}; known formats: {names}", file=str(path))
    if fmt not in wanted:
        other = "read_items" if fmt in ITEM_FORMATS else "read_events"
        raise DataError(f"{fmt!r} is not one of {', '.join(wanted)}; use {other}", file=str(path))
    return fmt


def open_raw(path: str | Path) -> IO[bytes]:
    """The file's bytes as stored; a path that cannot be read is a DataError naming it."""
    try:
        return open(path, "rb")
    except FileNotFoundError:
        raise DataError("no such file", file=str(path)) from None
    except IsADirectoryError:
        raise DataError("a directory, not a file", file=str(path)) from None
    except OSError as err:
        raise DataError(f"cannot open: {err.strerror}", file=str(path)) from None


def open_binary(path: str | Path, report: ReadReport | None = None) -> IO[bytes]:
    """Open for reading bytes, decompressing gzip when the content (not the name) says so.

    A gzip stream that ends early (a truncated download) is a DataError naming the file and
    the byte, unless `report.allow_truncated`: then reading stops there and the report keeps
    the byte in `truncated_at`.
    """
    raw = open_raw(path)
    magic = raw.read(2)
    raw.seek(0)
    if magic != _GZIP_MAGIC:
        return raw
    return io.BufferedReader(_Gzip(raw, Path(path), report), _BLOCK_BYTES)


class _Gzip(io.RawIOBase):
    def __init__(self, raw: IO[bytes], path: Path, report: ReadReport | None) -> None:
        self.raw, self.path, self.report = raw, path, report
        self.stream = gzip.GzipFile(fileobj=raw, mode="rb")

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:  # type: ignore[no-untyped-def]
        try:  # (read1: what one step decompressed, so nothing before a break is lost)
            data = self.stream.read1(len(buffer))
            buffer[: len(data)] = data
            return len(data)
        except (EOFError, gzip.BadGzipFile, zlib.error) as err:
            at, size = self.raw.tell(), self.path.stat().st_size
            if self.report is not None and self.report.allow_truncated:
                self.report.truncated_at = at
                return 0
            raise DataError(f"the gzip stream breaks off at byte {at:,} of {size:,} ({err}): "
                            "the file is truncated or damaged; fetch it again, or pass "
                            "--allow-truncated to keep the lines before", file=str(self.path)
                            ) from None

    def close(self) -> None:
        self.stream.close()
        self.raw.close()
        super().close()


def open_text(path: str | Path, report: ReadReport | None = None) -> io.TextIOWrapper:
    """Text for csv: a UTF-8 BOM is dropped and undecodable bytes are replaced, never fatal."""
    return io.TextIOWrapper(open_binary(path, report), encoding="utf-8-sig", errors="replace",
                            newline="")


def iter_lines(
    path: str | Path, block_bytes: int = _BLOCK_BYTES, report: ReadReport | None = None
) -> Iterator[tuple[int, bytes]]:
    """(1-based line number, line without its line ending) for every non-blank line."""
    number = 0
    with open_binary(path, report) as f:
        # Splitting large blocks is several times faster than readline on a gzip stream.
        head = f.read(block_bytes)
        rest = head[3:] if head.startswith(b"\xef\xbb\xbf") else head  # BOM: not data
        tail = b""
        while rest:
            lines = (tail + rest).split(b"\n")
            tail = lines.pop()
            for line in lines:
                number += 1
                if line.strip():
                    yield number, line.rstrip(b"\r")
                elif report is not None:  # every input line is read or counted
                    report.blank_lines += 1
                    report.lines_read += 1
            rest = f.read(block_bytes)
        if tail.strip():
            yield number + 1, tail.rstrip(b"\r")


def chunked(items: Iterable[T], size: int) -> Iterator[list[T]]:
    """Lists of up to `size` consecutive items."""
    if size < 1:
        raise ValueError(f"chunk size must be positive, got {size}")
    it = iter(items)
    while chunk := list(islice(it, size)):
        yield chunk


def detect_format(path: str | Path) -> str:
    """The format name of `path`, judged from its content (magic bytes, first lines)."""
    with open_raw(path) as probe:
        if probe.read(4) == _PARQUET_MAGIC:
            return _detect_parquet(path)
    found = _detect_text(_head(path))
    if found is None:
        raise DataError(
            "cannot tell the format from the content; pass format= one of "
            + ", ".join(EVENT_FORMATS + ITEM_FORMATS),
            file=str(path),
        )
    return found


def _head(path: str | Path) -> list[str]:
    lines: list[str] = []
    # (a look at the first lines: a truncated file is judged where it is read)
    with open_binary(path, ReadReport(str(path), "", allow_truncated=True)) as f:
        while len(lines) < _DETECT_LINES:
            raw = f.readline(_DETECT_BYTES)
            if not raw:
                break
            text = raw.decode("utf-8", errors="replace").lstrip("\ufeff").strip()
            if text:
                lines.append(text)
    return lines


def _detect_text(lines: list[str]) -> str | None:
    if not lines:
        return None
    if lines[0].startswith("{"):
        # Try several lines: one malformed line at the top must not hide the format.
        for line in lines:
            record = _as_mapping(line)
            if record is not None:
                return _detect_keys(frozenset(record))
        return None
    return _detect_delimited(lines[0])


def _as_mapping(line: str) -> dict | None:
    try:
        record = json.loads(line)
    except ValueError:
        try:
            record = ast.literal_eval(line)  # the 2014 metadata is Python literals, not JSON
        except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
            return None
    return record if isinstance(record, dict) else None


def _detect_keys(keys: frozenset[str]) -> str | None:
    if {"reviewerID", "asin"} <= keys:
        return AMAZON_2018 if keys & _KEYS_2018 else AMAZON_2014
    if "user_id" in keys and "rating" in keys and keys & {"parent_asin", "asin"}:
        return AMAZON_2023
    if "parent_asin" in keys:
        return META_2023
    if "asin" in keys:
        return META_2014 if keys & {"categories", "salesRank"} else META_2018
    return None


def _detect_delimited(first: str) -> str | None:
    if "::" in first:
        return MOVIELENS_DAT if _rating_row(first.split("::")) else None
    if "\t" in first:
        fields = first.split("\t")
        if all(":" in f for f in fields):
            return RECBOLE  # typed header: user_id:token, rating:float, ...
        return MOVIELENS_DATA if _rating_row(fields) else None
    if "," in first:
        header = [f.strip() for f in next(csv.reader([first]))]
        if tuple(header[:4]) == MOVIELENS_CSV_HEADER:
            return MOVIELENS_CSV
        if _all_numbers(header, len(header)):
            return None  # a headerless CSV: nothing to map columns by
        names = set(header)
        if "item" in names and names & _ITEM_FEATURES and not names & _RATING_NAMES:
            return ITEMS_CSV
        return CSV
    return None


def _rating_row(fields: list[str]) -> bool:
    """user, item, rating, ts: ids may be any text, rating and ts must be numbers."""
    return len(fields) == 4 and _all_numbers(fields[2:], 2)


def _all_numbers(fields: list[str], count: int) -> bool:
    if len(fields) != count:
        return False
    try:
        [float(f) for f in fields]
    except ValueError:
        return False
    return True


def _detect_parquet(path: str | Path) -> str:
    import pyarrow.parquet as pq

    try:
        names = set(pq.read_schema(path).names)
    except Exception as err:  # pyarrow's errors (ArrowInvalid, OSError...) say what broke
        raise DataError(f"starts like Parquet but cannot be read as Parquet: {err}",
                        file=str(path)) from None
    if "item" in names and names & _ITEM_FEATURES and not names & _RATING_NAMES:
        return ITEMS_PARQUET
    return PARQUET
