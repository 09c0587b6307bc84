"""Calendar periods and bucket edges in a time zone, DST-correct.

Billing periods are calendar months (or quarters, or ISO weeks) in the contract's zone:
Europe/Berlin October 2026 runs from 2026-10-01T00:00+02:00 to 2026-11-01T00:00+01:00,
which is 745 hours. Every edge is an aware datetime; code that cuts usage turns them
into epoch milliseconds (UTC) with :func:`to_ms`.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta, tzinfo
from typing import Literal, get_args
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from common.errors import RunhoursError
from wire import from_epoch_ms, to_epoch_ms

PeriodKind = Literal["month", "quarter", "week"]
BucketSize = Literal["hour", "day", "month"]
BUCKET_SIZES: tuple[BucketSize, ...] = get_args(BucketSize)

HOUR_MS = 3_600_000

_MONTH = re.compile(r"(\d{4})-(\d{2})")
_QUARTER = re.compile(r"(\d{4})-Q([1-4])")
_WEEK = re.compile(r"(\d{4})-W(\d{2})")


class PeriodError(RunhoursError, ValueError):
    """A period label, time or zone could not be understood; the message says how to write it."""


def zone(name: str) -> ZoneInfo:
    """The IANA zone ``name`` (``Europe/Berlin``, ``UTC``), or a ``PeriodError`` saying so."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise PeriodError(
            f"unknown time zone {name!r}: use an IANA name such as 'Europe/Berlin' or 'UTC'"
        ) from None


def to_ms(ts: datetime) -> int:
    """Aware datetime → epoch milliseconds."""
    return to_epoch_ms(ts)


def local_instant(naive: datetime, tz: tzinfo) -> datetime:
    """A wall-clock time in ``tz`` as an aware datetime (the earlier one when ambiguous)."""
    # Round-trip through UTC so a time that falls into a DST gap lands on a real instant.
    return naive.replace(tzinfo=tz).astimezone(UTC).astimezone(tz)


def local_midnight(day: date, tz: tzinfo) -> datetime:
    """The first instant of ``day`` in ``tz`` (as an aware datetime in ``tz``)."""
    return local_instant(datetime(day.year, day.month, day.day), tz)


@dataclass(frozen=True)
class Period:
    """A half-open interval ``[start, end)`` of local calendar time, with its label."""

    kind: PeriodKind | Literal["custom"]
    label: str
    start: datetime
    end: datetime

    @property
    def hours(self) -> float:
        # Subtract in UTC: aware datetimes sharing a tzinfo subtract as wall-clock times.
        return (self.end_ms - self.start_ms) / HOUR_MS

    @property
    def start_ms(self) -> int:
        return to_ms(self.start)

    @property
    def end_ms(self) -> int:
        return to_ms(self.end)


def _add_months(year: int, month: int, months: int) -> tuple[int, int]:
    index = year * 12 + (month - 1) + months
    return index // 12, index % 12 + 1


def period_kind(label: str) -> PeriodKind:
    """Which kind of period a label names: ``2026-10`` month, ``2026-Q4``, ``2026-W40``."""
    if _MONTH.fullmatch(label):
        return "month"
    if _QUARTER.fullmatch(label):
        return "quarter"
    if _WEEK.fullmatch(label):
        return "week"
    raise PeriodError(
        f"period {label!r} not understood: write a month as 2026-10, a quarter as 2026-Q4 "
        "or an ISO week as 2026-W40"
    )


def calendar_period(label: str, tz: tzinfo) -> Period:
    """The calendar period named by ``label`` in zone ``tz``."""
    kind = period_kind(label)
    if kind == "month":
        match = _MONTH.fullmatch(label)
        assert match is not None
        year, month = int(match[1]), int(match[2])
        if not 1 <= month <= 12:
            raise PeriodError(f"period {label!r}: month must be 01..12")
        first = date(year, month, 1)
        ny, nm = _add_months(year, month, 1)
        after = date(ny, nm, 1)
    elif kind == "quarter":
        match = _QUARTER.fullmatch(label)
        assert match is not None
        year, quarter = int(match[1]), int(match[2])
        first = date(year, 3 * quarter - 2, 1)
        ny, nm = _add_months(year, first.month, 3)
        after = date(ny, nm, 1)
    else:
        match = _WEEK.fullmatch(label)
        assert match is not None
        try:
            first = date.fromisocalendar(int(match[1]), int(match[2]), 1)
        except ValueError:
            raise PeriodError(f"period {label!r}: no such ISO week") from None
        after = first + timedelta(days=7)
    return Period(kind, label, local_midnight(first, tz), local_midnight(after, tz))


def custom_period(start: datetime, end: datetime, tz: tzinfo) -> Period:
    """An arbitrary ``[start, end)`` shown in zone ``tz`` (for summaries of a simulated run)."""
    if start.tzinfo is None or end.tzinfo is None:
        raise PeriodError("period start and end must be timezone-aware")
    if end <= start:
        raise PeriodError(f"period end {end.isoformat()} is not after its start")
    lo, hi = start.astimezone(tz), end.astimezone(tz)
    return Period("custom", f"{lo.isoformat()}/{hi.isoformat()}", lo, hi)


def parse_instant(text: str, tz: tzinfo) -> datetime:
    """An RFC 3339 time (``2026-10-01T08:00:00Z``) or a local date/time in ``tz``.

    ``2026-10-01`` means local midnight of that day; a time without offset is local too.
    """
    text = text.strip()
    try:
        if len(text) == 10:
            return local_midnight(date.fromisoformat(text), tz)
        value = datetime.fromisoformat(text.replace("z", "Z"))
    except ValueError:
        raise PeriodError(
            f"time {text!r} not understood: use RFC 3339 (2026-10-01T08:00:00Z) "
            "or a date (2026-10-01)"
        ) from None
    return local_instant(value, tz) if value.tzinfo is None else value


def bucket_edges(
    start: datetime, end: datetime, by: BucketSize | None, tz: tzinfo
) -> list[datetime]:
    """Edges of the buckets that cover ``[start, end)``: the ends plus every local hour,
    day or month boundary strictly between them (``by=None``: one bucket)."""
    if end <= start:
        raise PeriodError(f"end {end.isoformat()} is not after start {start.isoformat()}")
    lo, hi = start.astimezone(tz), end.astimezone(tz)
    inner: list[datetime] = []
    if by == "hour":
        # Local hour boundaries: every instant whose local time is hh:00:00. Stepping UTC by
        # 15 minutes finds them in every zone in use (offsets are multiples of 15 minutes).
        step = timedelta(minutes=15)
        t = datetime.fromtimestamp(to_ms(lo) // 900_000 * 900, UTC) + step
        while t < hi:
            local = t.astimezone(tz)
            if local.minute == 0 and local.second == 0 and t > lo:
                inner.append(local)
            t += step
    elif by == "day":
        day = lo.date() + timedelta(days=1)
        while (edge := local_midnight(day, tz)) < hi:
            if edge > lo:
                inner.append(edge)
            day += timedelta(days=1)
    elif by == "month":
        y, m = _add_months(lo.year, lo.month, 1)
        while (edge := local_midnight(date(y, m, 1), tz)) < hi:
            if edge > lo:
                inner.append(edge)
            y, m = _add_months(y, m, 1)
    elif by is not None:
        raise PeriodError(f"bucket size {by!r}: use one of {', '.join(BUCKET_SIZES)}")
    return [lo, *inner, hi]


def on_utc_hours(edges: Sequence[datetime | int]) -> bool:
    """True when every edge is a whole UTC hour, so hourly rollups can be cut at them.

    False for zones whose offset is not a whole number of hours (Asia/Kolkata,
    Australia/Adelaide): those periods must be computed from raw samples.
    """
    return all((e if isinstance(e, int) else to_ms(e)) % HOUR_MS == 0 for e in edges)


def floor_hour(ms: int) -> int:
    """The start of the UTC hour holding ``ms`` (epoch ms)."""
    return ms - ms % HOUR_MS


def ceil_hour(ms: int) -> int:
    """``ms`` rounded up to a whole UTC hour (epoch ms)."""
    return -(-ms // HOUR_MS) * HOUR_MS


def as_datetime(ms: int) -> datetime:
    """Epoch milliseconds → aware UTC datetime."""
    return from_epoch_ms(ms)
