"""A machine's states as intervals, and its stops inside planned production time (pure).

``state_intervals`` turns samples into the step function billing integrates (the same
semantics as ``analytics.usage``: a state holds until the next sample, at most
``max_gap``; heartbeats carry the state before them): merged ``[start, end)`` intervals of
one state each, unknown time left out.

A *stop* is a stretch of planned production time in which the machine is in one of the
stop states (idle, fault, maintenance, off by default; neighbours in different stop
states merge: a fault followed by idling while someone fetches the fitter is one stop).
Running, unknown time and the edges of planned time (a shift's end, a break) end a stop,
so a stop lies inside one planned window and its identity is its machine and its start.
Stops shorter than ``min_stop`` are *short stops*: counted, not listed for a reason.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from analytics.usage import NO_STATE, Int8Array, effective_states
from wire import STATES

IntArray = npt.NDArray[np.int64]
RUNNING = STATES.index("running")


@dataclass(frozen=True)
class Intervals:
    """Known states of one machine: ``[starts[i], ends[i])`` in ``codes[i]``, sorted, disjoint."""

    starts: IntArray
    ends: IntArray
    codes: Int8Array

    @classmethod
    def none(cls) -> Intervals:
        return cls(np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.int8))

    def clip(self, lo: int, hi: int) -> Intervals:
        """The pieces inside ``[lo, hi)``."""
        keep = (self.ends > lo) & (self.starts < hi)
        return Intervals(
            np.maximum(self.starts[keep], lo), np.minimum(self.ends[keep], hi), self.codes[keep]
        )

    def ms(self, code: int | None = None) -> int:
        """Milliseconds in ``code`` (None: known time)."""
        lengths = self.ends - self.starts
        return int(lengths.sum() if code is None else lengths[self.codes == code].sum())

    def cumulative(self, code: int) -> tuple[IntArray, IntArray]:
        """``(starts, before)`` of the ``code`` intervals, for :func:`ms_before`."""
        mask = self.codes == code
        starts, ends = self.starts[mask], self.ends[mask]
        before = np.concatenate([[0], np.cumsum(ends - starts)]).astype(np.int64)
        return np.stack([starts, ends]), before


def ms_before(table: tuple[IntArray, IntArray], t: IntArray) -> IntArray:
    """Milliseconds of the tabulated intervals (``Intervals.cumulative``) before each ``t``."""
    (starts, ends), before = table
    t = np.asarray(t, dtype=np.int64)
    if starts.size == 0:
        return np.zeros(t.size, np.int64)
    j = np.searchsorted(starts, t, side="right") - 1
    jj = np.clip(j, 0, None)
    inside = np.clip(t - starts[jj], 0, ends[jj] - starts[jj])
    return np.where(j >= 0, before[jj] + inside, 0).astype(np.int64)


def state_intervals(
    ts_ms: IntArray, codes: Int8Array, max_gap_ms: int, carry_horizon_ms: int
) -> Intervals:
    """The known states of sorted, unique samples as merged intervals."""
    if ts_ms.size == 0:
        return Intervals.none()
    effective = effective_states(ts_ms, codes, max_gap_ms, carry_horizon_ms)
    ends = ts_ms + max_gap_ms
    ends[:-1] = np.minimum(ends[:-1], ts_ms[1:])
    keep = effective != NO_STATE
    starts, stops, states = ts_ms[keep], ends[keep], effective[keep]
    if starts.size == 0:
        return Intervals.none()
    # A new interval where the state changes or the previous one ended before this starts.
    new = np.ones(starts.size, np.bool_)
    new[1:] = (states[1:] != states[:-1]) | (starts[1:] > stops[:-1])
    first = np.flatnonzero(new)
    last = np.append(first[1:] - 1, starts.size - 1)
    return Intervals(starts[first], stops[last], states[first].astype(np.int8))


@dataclass(frozen=True)
class Stop:
    """One stop: ``[start_ms, end_ms)`` inside one planned window, and its time per state."""

    start_ms: int
    end_ms: int
    state_ms: dict[str, int] = field(default_factory=dict)
    open: bool = False  # still going at the end of the data looked at

    @property
    def ms(self) -> int:
        return self.end_ms - self.start_ms

    @property
    def main_state(self) -> str:
        """The state it spent most time in (the first such, in ``STATES`` order)."""
        return max(STATES, key=lambda s: (self.state_ms.get(s, 0), -STATES.index(s)))


def stops_in(
    intervals: Intervals,
    windows: Sequence[tuple[int, int]],
    stop_states: Sequence[str],
    data_end_ms: int | None = None,
) -> list[Stop]:
    """Every stop (of any length) inside the planned ``windows``, in time order.

    ``data_end_ms``: where the data ends; a stop reaching it is ``open`` (it may go on).
    """
    codes = {STATES.index(s) for s in stop_states}
    out: list[Stop] = []
    for lo, hi in windows:
        piece = intervals.clip(lo, hi)
        current: dict[str, int] = {}
        begin = end = -1
        for a, b, code in zip(
            piece.starts.tolist(), piece.ends.tolist(), piece.codes.tolist(), strict=True
        ):
            if code in codes and current and a == end:
                current[STATES[code]] = current.get(STATES[code], 0) + b - a
                end = b
                continue
            if current:
                out.append(Stop(begin, end, current))
                current = {}
            if code in codes:
                begin, end, current = a, b, {STATES[code]: b - a}
        if current:
            out.append(Stop(begin, end, current))
    if data_end_ms is not None:
        out = [
            Stop(s.start_ms, s.end_ms, s.state_ms, True) if s.end_ms >= data_end_ms else s
            for s in out
        ]
    return out
