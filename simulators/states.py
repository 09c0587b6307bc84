"""The state process: a machine's true state over time, as merged millisecond segments.

Pure given its random generator: the same calendar, start, timing and generator state give
the same segments. Off outside shifts; in a shift alternating running/idle periods with
random stops (``fault``, with a repair time) and occasional planned ``maintenance`` at a
shift start; idle through the calendar's breaks (a stop under repair goes on); running
without a break through a rush window (if any); a bearing failure (if any) cuts in at its
exact instant.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from simulators.calendar import WorkCalendar
from wire import State

Segment = tuple[int, int, State]  # [start_ms, end_ms), state

MIN_PERIOD_MS = 30_000  # shortest random running/idle/fault period


@dataclass(frozen=True)
class StateTiming:
    """Kind-specific rhythm of the state process (minutes, and rates per running hour)."""

    running_min: float  # mean running period
    idle_min: float  # mean idle period
    faults_per_running_hour: float  # random stops (tripped drive, tool break, jam)
    repair_min: float  # mean time a random stop takes to clear
    maintenance_per_shift_window: float  # chance of planned maintenance at a window start
    maintenance_min: tuple[float, float]  # planned maintenance duration range


@dataclass(frozen=True)
class Failure:
    """A bearing failure: ``fault`` from ``at_ms`` for ``fault_ms``, then ``maintenance``."""

    at_ms: int
    fault_ms: int
    repair_ms: int


def _period(rng: np.random.Generator, mean_min: float) -> int:
    # Gamma(shape 2): rarely very short, a long right tail, like real cycle times.
    return max(MIN_PERIOD_MS, round(float(rng.gamma(2.0, mean_min / 2.0)) * 60_000))


class _Breaks:
    """The calendar's breaks, consumed in time order."""

    NONE = (2**62, 2**62)

    def __init__(self, breaks: Iterator[tuple[int, int]]) -> None:
        self._breaks = breaks
        self._next = next(self._breaks, self.NONE)

    def after(self, t: int) -> tuple[int, int]:
        """The first break that ends after ``t`` (``NONE``: no more breaks)."""
        while self._next[1] <= t:
            self._next = next(self._breaks, self.NONE)
        return self._next


def _raw(
    calendar: WorkCalendar,
    start_ms: int,
    timing: StateTiming,
    rng: np.random.Generator,
    failure: Failure | None,
    rush: tuple[int, int] | None,
) -> Iterator[Segment]:
    windows = calendar.windows(start_ms)
    breaks = _Breaks(calendar.breaks(start_ms))
    w0, w1 = next(windows)
    t = start_ms
    run_next = bool(rng.random() < 0.5)
    state: State
    while True:
        while w1 <= t:
            w0, w1 = next(windows)
        if failure is not None and t >= failure.at_ms:
            fault_end = t + failure.fault_ms
            yield t, fault_end, "fault"
            yield fault_end, fault_end + failure.repair_ms, "maintenance"
            t, failure, run_next = fault_end + failure.repair_ms, None, False
            continue
        cut = failure.at_ms if failure is not None else None
        if rush is not None and rush[0] <= t < rush[1]:
            # A rush order: it runs, shift or not, no random stop; only a failure cuts in.
            end = rush[1] if cut is None else min(rush[1], cut)
            yield t, end, "running"
            t, run_next = end, False
            continue
        if rush is not None and t < rush[0]:
            cut = rush[0] if cut is None else min(rush[0], cut)  # whatever it does, until then
        b0, b1 = breaks.after(t)
        stop = min(w1, b0) if t < b0 else w1  # what a period may not run past
        if t < w0:
            end, state = w0, "off"
            run_next = False  # a shift starts with a short idle (warm-up, first set-up)
        elif b0 <= t:
            end, state = min(b1, w1), "idle"  # a break: the crew is away
            run_next = True
        elif t == w0 and rng.random() < timing.maintenance_per_shift_window:
            low, high = timing.maintenance_min
            end, state = min(stop, t + round(float(rng.uniform(low, high)) * 60_000)), "maintenance"
            run_next = False
        elif run_next:
            end, state = min(stop, t + _period(rng, timing.running_min)), "running"
            to_fault = round(float(rng.exponential(60.0 / timing.faults_per_running_hour)) * 60_000)
            if t + to_fault < end and (cut is None or t + to_fault < cut):
                yield t, t + to_fault, "running"
                t += to_fault
                # A stop is cleared when it is cleared: repairs may run past the shift end.
                end, state = t + _period(rng, timing.repair_min), "fault"
            run_next = False
        else:
            end, state = min(stop, t + _period(rng, timing.idle_min)), "idle"
            run_next = True
        if cut is not None and end > cut:
            end = cut
        yield t, end, state
        t = end


def timeline(
    calendar: WorkCalendar,
    start_ms: int,
    timing: StateTiming,
    rng: np.random.Generator,
    failure: Failure | None = None,
    rush: tuple[int, int] | None = None,
) -> Iterator[Segment]:
    """Infinite, time-ordered segments from ``start_ms``; neighbours always differ in state.

    ``rush``: ``[start_ms, end_ms)`` in which the machine runs without a break (a rush order).
    """
    pending: Segment | None = None
    for begin, end, state in _raw(calendar, start_ms, timing, rng, failure, rush):
        if end <= begin:
            continue
        if pending is None:
            pending = (begin, end, state)
        elif pending[2] == state:
            pending = (pending[0], end, state)
        else:
            yield pending
            pending = (begin, end, state)
