"""What every part of the session store shares: limits, the clock and short reprs."""

from __future__ import annotations

from datetime import datetime, timezone

MAX_NAME = 100
# SQLite integers are signed 64-bit; anything larger must be refused before it reaches SQLite.
MAX_SQL_INT = 2**63 - 1


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


def _short(value: object, limit: int = 40) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."
