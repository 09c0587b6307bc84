"""The shift calendar: when a machine is staffed, as UTC millisecond windows.

Two shifts Monday to Friday, 06:00-14:00 and 14:00-22:00 local time; the machine is
``off`` outside them. Local times are resolved with ``zoneinfo``, so the windows stay
at 06:00 and 22:00 local across daylight-saving changes.

A machine may follow any other ``WorkCalendar`` (``MachineSpec.calendar``): staffed
windows, and breaks inside them (the crew is away, the machine idles).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Protocol
from zoneinfo import ZoneInfo

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def to_ms(ts: datetime) -> int:
    """Aware datetime → epoch milliseconds (floor), the simulator's internal time unit."""
    return (ts - EPOCH) // timedelta(milliseconds=1)


def from_ms(ms: int) -> datetime:
    """Epoch milliseconds → aware UTC datetime (exact)."""
    return EPOCH + timedelta(milliseconds=ms)


class WorkCalendar(Protocol):
    """When a machine is staffed: what the state process needs of a calendar."""

    def windows(self, begin_ms: int) -> Iterator[tuple[int, int]]:
        """Staffed windows ``[start_ms, end_ms)`` ending after ``begin_ms``, in time order,
        back-to-back ones merged (infinite)."""
        ...

    def breaks(self, begin_ms: int) -> Iterator[tuple[int, int]]:
        """Breaks ``[start_ms, end_ms)`` inside the windows ending after ``begin_ms``, in
        time order (may end)."""
        ...


@dataclass(frozen=True)
class ShiftCalendar:
    """Working windows: ``shifts`` (local start, end) on ``workdays`` (0 = Monday)."""

    timezone: str = "Europe/Berlin"
    shifts: tuple[tuple[time, time], ...] = ((time(6), time(14)), (time(14), time(22)))
    workdays: frozenset[int] = frozenset(range(5))

    def __post_init__(self) -> None:
        if not self.workdays or not self.shifts:
            raise ValueError("ShiftCalendar needs at least one workday and one shift")
        for first, last in self.shifts:
            if not first < last:
                raise ValueError(f"shift {first}-{last} must end after it starts, on the same day")

    def windows(self, begin_ms: int) -> Iterator[tuple[int, int]]:
        """Staffed windows ``[start_ms, end_ms)`` that end after ``begin_ms``, in time order.

        Back-to-back shifts merge into one window (06:00-22:00): the machine does not stop
        at the handover. Infinite iterator; the caller stops it.
        """
        zone = ZoneInfo(self.timezone)
        day: date = from_ms(begin_ms).astimezone(zone).date() - timedelta(days=1)
        pending: tuple[int, int] | None = None
        while True:
            if day.weekday() in self.workdays:
                for first, last in self.shifts:
                    lo = to_ms(datetime.combine(day, first, tzinfo=zone))
                    hi = to_ms(datetime.combine(day, last, tzinfo=zone))
                    if pending is not None and pending[1] == lo:
                        pending = (pending[0], hi)
                        continue
                    if pending is not None and pending[1] > begin_ms:
                        yield pending
                    pending = (lo, hi)
            day += timedelta(days=1)

    def breaks(self, begin_ms: int) -> Iterator[tuple[int, int]]:
        """No breaks: the machines of this calendar run through the shift."""
        return iter(())
