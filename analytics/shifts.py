"""Shift schedules: when a site plans to produce, in its own time zone (pure maths).

A ``Schedule`` is a weekly pattern of shifts (``06:00-14:00``, a night shift
``22:00-06:00`` that ends the next day), each with its breaks, on some weekdays, closed on
the site's holidays. Its *occurrences* (``ShiftRun``) are the concrete shifts: the early
shift of Tuesday 2026-03-03, from its local start to its local end, DST-correct (a night
shift across the spring change lasts 7 hours). Planned production time is a run's time
less its breaks.

A shift belongs to the day it starts on (its *production day*): a night shift from
Monday 22:00 to Tuesday 06:00 is Monday's. Days and weeks of OEE are made of the shifts
that start in them, so a day's figures never split a shift.

A ``Schedule`` is also a calendar the simulators can follow (``windows`` and ``breaks``),
so a simulated machine works the very shifts its site plans.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from analytics.periods import local_instant, to_ms, zone

WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


class ScheduleError(ValueError):
    """A shift, break or schedule does not make sense; the message says which and why."""


def _minutes(t: time) -> int:
    return t.hour * 60 + t.minute


@dataclass(frozen=True)
class Shift:
    """One shift of a weekly pattern: local start and end (``end <= start``: the next day)
    and its breaks (local times inside it)."""

    name: str
    start: time
    end: time
    breaks: tuple[tuple[time, time], ...] = ()

    @property
    def overnight(self) -> bool:
        return self.end <= self.start

    def offsets(self, t: time) -> int:
        """Minutes from the shift's start to local time ``t`` within it (0..24 h)."""
        return (_minutes(t) - _minutes(self.start)) % (24 * 60)

    def __post_init__(self) -> None:
        length = self.offsets(self.end) or 24 * 60
        last = 0
        for first, until in self.breaks:
            lo, hi = self.offsets(first), self.offsets(until)
            if not 0 < lo < hi < length:
                raise ScheduleError(
                    f"shift {self.name!r}: break {first:%H:%M}-{until:%H:%M} must lie inside "
                    f"the shift ({self.start:%H:%M}-{self.end:%H:%M}) and end after it starts"
                )
            if lo < last:
                raise ScheduleError(
                    f"shift {self.name!r}: breaks must be in time order and must not overlap"
                )
            last = hi


@dataclass(frozen=True)
class ShiftRun:
    """One occurrence of a shift: ``[start_ms, end_ms)`` and its breaks, on production ``day``."""

    day: date
    shift: str
    start_ms: int
    end_ms: int
    breaks: tuple[tuple[int, int], ...] = ()

    @property
    def planned(self) -> list[tuple[int, int]]:
        """The run less its breaks: the windows of planned production time."""
        out, at = [], self.start_ms
        for b0, b1 in self.breaks:
            if b0 > at:
                out.append((at, b0))
            at = max(at, b1)
        if at < self.end_ms:
            out.append((at, self.end_ms))
        return out

    @property
    def planned_ms(self) -> int:
        return sum(b - a for a, b in self.planned)

    @property
    def week(self) -> tuple[int, int]:
        """ISO (year, week) of the production day."""
        iso = self.day.isocalendar()
        return iso.year, iso.week


@dataclass(frozen=True)
class Schedule:
    """A site's weekly shift pattern in its zone: shifts start on ``days`` (0 = Monday),
    never on ``holidays``."""

    name: str
    timezone: str
    shifts: tuple[Shift, ...]
    days: frozenset[int] = frozenset(range(5))
    holidays: frozenset[date] = frozenset()

    def __post_init__(self) -> None:
        zone(self.timezone)  # a clear error for an unknown zone
        if not self.shifts:
            raise ScheduleError(f"schedule {self.name!r}: needs at least one shift")
        if not self.days:
            raise ScheduleError(f"schedule {self.name!r}: needs at least one day")
        names = [s.name for s in self.shifts]
        if len(set(names)) != len(names):
            raise ScheduleError(f"schedule {self.name!r}: shift names must be unique")
        # Shifts may not overlap: check a whole week with every day worked.
        monday = date(2026, 1, 5)
        runs = self._runs_of_days(monday, monday + timedelta(days=8), every_day=True)
        for a, b in itertools.pairwise(runs):
            if b.start_ms < a.end_ms:
                raise ScheduleError(
                    f"schedule {self.name!r}: shifts {a.shift!r} and {b.shift!r} overlap"
                )

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    def _at(self, day: date, t: time) -> int:
        return to_ms(local_instant(datetime.combine(day, t), self.zone))

    def _run(self, day: date, shift: Shift) -> ShiftRun:
        end_day = day + timedelta(days=1) if shift.overnight else day
        breaks = tuple(
            (
                self._at(day if b0 >= shift.start else day + timedelta(days=1), b0),
                self._at(day if b1 > shift.start else day + timedelta(days=1), b1),
            )
            for b0, b1 in shift.breaks
        )
        return ShiftRun(
            day, shift.name, self._at(day, shift.start), self._at(end_day, shift.end), breaks
        )

    def _runs_of_days(self, first: date, last: date, every_day: bool = False) -> list[ShiftRun]:
        """Runs starting on ``first`` .. ``last`` (exclusive), in time order."""
        runs = []
        day = first
        while day < last:
            if every_day or (day.weekday() in self.days and day not in self.holidays):
                runs += [self._run(day, shift) for shift in self.shifts]
            day += timedelta(days=1)
        return sorted(runs, key=lambda r: r.start_ms)

    def runs(self, lo_ms: int, hi_ms: int) -> list[ShiftRun]:
        """Every run that overlaps ``[lo_ms, hi_ms)``, in time order."""
        tz = self.zone
        first = datetime.fromtimestamp(lo_ms / 1000, tz).date() - timedelta(days=1)
        last = datetime.fromtimestamp(hi_ms / 1000, tz).date() + timedelta(days=1)
        return [
            r for r in self._runs_of_days(first, last) if r.end_ms > lo_ms and r.start_ms < hi_ms
        ]

    def _runs_from(self, begin_ms: int) -> Iterator[ShiftRun]:
        """Runs that end after ``begin_ms``, forever (a week at a time)."""
        day = datetime.fromtimestamp(begin_ms / 1000, self.zone).date() - timedelta(days=1)
        while True:
            for run in self._runs_of_days(day, day + timedelta(days=7)):
                if run.end_ms > begin_ms:
                    yield run
            day += timedelta(days=7)

    # -- the simulators' calendar protocol (simulators.calendar.WorkCalendar) -------------

    def windows(self, begin_ms: int) -> Iterator[tuple[int, int]]:
        """Staffed windows ending after ``begin_ms``: the runs of each production day, the
        back-to-back ones merged (a round-the-clock schedule: one window per day)."""
        pending: tuple[date, int, int] | None = None
        for run in self._runs_from(begin_ms):
            if pending is not None and run.day == pending[0] and run.start_ms <= pending[2]:
                pending = (pending[0], pending[1], max(pending[2], run.end_ms))
                continue
            if pending is not None:
                yield pending[1], pending[2]
            pending = (run.day, run.start_ms, run.end_ms)

    def breaks(self, begin_ms: int) -> Iterator[tuple[int, int]]:
        """The runs' breaks ending after ``begin_ms``, in time order."""
        if not any(shift.breaks for shift in self.shifts):
            return
        for run in self._runs_from(begin_ms):
            for b0, b1 in run.breaks:
                if b1 > begin_ms:
                    yield b0, b1


def parse_clock(text: str, what: str) -> time:
    """``"06:00"`` → ``time(6)``; ``"24:00"`` is midnight at the end of the day."""
    try:
        hour, minute = text.strip().split(":")
        if hour == "24" and minute == "00":
            return time(0)
        if len(minute) != 2:
            raise ValueError
        return time(int(hour), int(minute))
    except ValueError:
        raise ScheduleError(
            f"{what}: {text!r} is not a local time (write HH:MM, e.g. 06:00)"
        ) from None


def parse_span(text: str, what: str) -> tuple[time, time]:
    """``"10:00-10:30"`` → ``(time(10), time(10, 30))``."""
    first, sep, last = text.partition("-")
    if not sep:
        raise ScheduleError(f"{what}: {text!r} is not a span (write HH:MM-HH:MM, e.g. 10:00-10:30)")
    return parse_clock(first, what), parse_clock(last, what)


def weekday(text: str, what: str) -> int:
    """``"Mon"`` (any case, or the full name) → 0."""
    key = text.strip().lower()[:3]
    if key not in WEEKDAYS or len(text.strip()) < 3:
        raise ScheduleError(f"{what}: {text!r} is not a weekday (use Mon, Tue, … Sun)")
    return WEEKDAYS.index(key)
