"""Safe building blocks for InfluxQL text."""

from __future__ import annotations

from datetime import UTC, datetime


def quote_ident(name: str) -> str:
    """A double-quoted identifier (measurement, tag or field name)."""
    return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'


def quote_string(value: str) -> str:
    """A single-quoted string literal (tag values in WHERE clauses)."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def time_literal(ts: datetime) -> str:
    """An RFC 3339 UTC literal for ``WHERE time >= …`` (aware datetimes only)."""
    if ts.tzinfo is None:
        raise ValueError(f"naive datetime {ts!r}: use an aware UTC time")
    return "'" + ts.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ") + "'"
