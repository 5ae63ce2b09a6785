"""Values made safe for standard JSON (which has no NaN or infinity)."""

from __future__ import annotations

import math
from typing import Any


def finite(value: Any) -> Any:
    """`value` with NaN and infinite floats as None, recursively through dicts and lists."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [finite(v) for v in value]
    return value
