"""Durations and times as people write them: ``"90s"``, ``"10m"``, ``"1h30m"``, ``"7d"``;
``2026-03-02T08:00Z``, ``now``, ``now-7d``. One reader for rule files, settings and options.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

from pydantic import BeforeValidator, PlainSerializer

from common.errors import RunhoursError


class TimeError(RunhoursError, ValueError):
    """A duration or time that cannot be read; the message says what was given and why."""


_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d|w)")
_UNITS = {
    "ms": timedelta(milliseconds=1),
    "s": timedelta(seconds=1),
    "m": timedelta(minutes=1),
    "h": timedelta(hours=1),
    "d": timedelta(days=1),
    "w": timedelta(weeks=1),
}


def parse_duration(value: Any) -> timedelta:
    """``"1h30m"`` → ``timedelta(hours=1, minutes=30)``; a bare number means seconds."""
    if isinstance(value, timedelta):
        return value
    if isinstance(value, bool):
        raise TimeError("must be a duration such as '90s', '10m', '2h' or '7d'")
    if isinstance(value, int | float):
        if not math.isfinite(value):
            raise TimeError(f"{value} is not a finite duration")
        if value < 0:
            raise TimeError(f"negative duration: {value}")
        return _bounded(value, lambda: timedelta(seconds=value))
    if not isinstance(value, str):
        raise TimeError("must be a duration such as '90s', '10m', '2h' or '7d'")
    text = value.strip().replace(" ", "")
    parts: list[tuple[float, timedelta]] = []
    pos = 0
    for match in _PART.finditer(text):
        if match.start() != pos:
            break
        parts.append((float(match.group(1)), _UNITS[match.group(2)]))
        pos = match.end()
    if not text or pos != len(text):
        raise TimeError(
            f"{value!r} is not a duration: use a number and a unit (ms, s, m, h, d, w), "
            "e.g. '90s', '10m', '1h30m', '7d'"
        )
    return _bounded(repr(value), lambda: sum((n * unit for n, unit in parts), timedelta(0)))


def _bounded(shown: object, make: Callable[[], timedelta]) -> timedelta:
    """``make()``, or a TimeError naming the input when it exceeds what a timedelta holds."""
    try:
        return make()
    except OverflowError:
        raise TimeError(f"{shown} is too long (at most {timedelta.max.days} days)") from None


def format_duration(value: timedelta) -> str:
    """The shortest ``1d2h3m4s`` spelling of a duration (whole seconds)."""
    seconds = int(value.total_seconds())
    if seconds == 0:
        return "0s"
    out = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        count, seconds = divmod(seconds, size)
        if count:
            out.append(f"{count}{unit}")
    return "".join(out)


Duration = Annotated[
    timedelta,
    BeforeValidator(parse_duration),
    PlainSerializer(format_duration, return_type=str),
]


def parse_time(text: str, what: str = "time", now: datetime | None = None) -> datetime:
    """An aware UTC time from RFC 3339 with a zone (``2026-03-02T08:00Z``), ``now`` or ``now-7d``."""
    text = text.strip()
    current = now or datetime.now(UTC)
    if text == "now" or text.startswith(("now-", "now+")):
        if text == "now":
            return current
        delta = parse_duration(text[4:])
        return current - delta if text[3] == "-" else current + delta
    try:
        ts = datetime.fromisoformat(text)
    except ValueError:
        raise TimeError(
            f"{what}: {text!r} is not a time; use RFC 3339 with a zone "
            "(2026-03-02T08:00:00Z), 'now' or 'now-7d'"
        ) from None
    if ts.tzinfo is None:
        raise TimeError(f"{what}: {text!r} has no time zone; add one, e.g. {text}Z")
    return ts.astimezone(UTC)


def require_range(start: datetime, end: datetime, what: str) -> None:
    """Raise :class:`TimeError` unless ``[start, end)`` is aware and not empty; ``what``
    (e.g. ``replay``) names whose ``--from``/``--to`` they are."""
    if start.tzinfo is None or end.tzinfo is None:
        raise TimeError(f"{what}: --from and --to need a time zone (e.g. 2026-03-02T00:00Z)")
    if end <= start:
        raise TimeError(
            f"{what}: --to ({end.isoformat()}) must be after --from ({start.isoformat()})"
        )
