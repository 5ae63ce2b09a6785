"""What a reader saw: lines read, rows kept, rows skipped by reason, with examples."""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass, field

from starcast.errors import DataError

MAX_EXAMPLES = 5


@dataclass(frozen=True)
class BadRow:
    """One skipped input row: where it was and why."""

    file: str
    line: int
    reason: str
    field: str | None = None

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}"
        return f"{where}: field {self.field!r}: {self.reason}" if self.field else (
            f"{where}: {self.reason}"
        )


@dataclass
class ReadReport:
    """Accounting for one read: every input line is either kept or counted as bad.

    `lines_read` counts data lines and blank lines (`blank_lines`; not headers); `rows`
    counts rows returned before de-duplication; `duplicates_removed` those dropped by it.
    """

    source: str
    format: str
    lines_read: int = 0
    rows: int = 0
    duplicates_removed: int = 0
    bad: Counter[str] = field(default_factory=Counter)
    examples: list[BadRow] = field(default_factory=list)
    strict: bool = False
    allow_truncated: bool = False  # a compressed file that breaks off: keep what came before
    truncated_at: int | None = None  # the compressed byte where it broke off, if it did
    ts_unit: str | None = None  # the unit the file's ts were found in (converted to seconds)
    blank_lines: int = 0  # counted in lines_read, neither kept nor bad
    notes: Counter[str] = field(default_factory=Counter)  # rows kept by a fallback, by which

    @property
    def bad_total(self) -> int:
        return sum(self.bad.values())

    @property
    def kept(self) -> int:
        return self.rows - self.duplicates_removed

    def skip(self, line: int, reason: str, field: str | None = None) -> None:
        """Count a bad row, or raise at once in strict mode."""
        if self.strict:
            raise DataError(reason, file=self.source, line=line, field=field)
        self.bad[reason] += 1
        if len(self.examples) < MAX_EXAMPLES:
            self.examples.append(BadRow(self.source, line, reason, field))

    def to_dict(self) -> dict:
        out = asdict(self)
        out["bad"] = dict(self.bad)
        out["notes"] = dict(self.notes)
        out["bad_total"] = self.bad_total
        out["kept"] = self.kept
        del out["strict"], out["allow_truncated"]
        return out
