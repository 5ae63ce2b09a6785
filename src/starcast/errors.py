"""The starcast exception tree.

    StarcastError            base of everything starcast raises on purpose
    +-- DataError            bad input data; names the file, line and field when known
    +-- ConfigError          unknown key or wrong type in a configuration
    +-- ModelFormatError     a model directory that cannot be loaded (missing file, wrong version)
    +-- NotFittedError       predict/save/update on a model that was never fitted
"""

from __future__ import annotations


class StarcastError(Exception):
    """Base class of every error starcast raises on purpose."""


class DataError(StarcastError, ValueError):
    """Input data that cannot be used. Carries where the problem is."""

    def __init__(
        self,
        reason: str,
        *,
        file: str | None = None,
        line: int | None = None,
        field: str | None = None,
    ) -> None:
        self.reason = reason
        self.file = file
        self.line = line
        self.field = field
        where = ":".join(str(p) for p in (file, line) if p is not None)
        parts = [where] if where else []
        if field:
            parts.append(f"field {field!r}")
        parts.append(reason)
        super().__init__(": ".join(parts))


class ConfigError(StarcastError, ValueError):
    """A configuration with an unknown key or a value of the wrong type."""


class ModelFormatError(StarcastError):
    """A model directory that this version of starcast cannot load."""


class NotFittedError(StarcastError, RuntimeError):
    """The model was used before `fit`."""
