"""The data an evaluation reads: per machine, step-sized observations of one window.

Pure data, built by ``analytics.alerts.source`` from InfluxDB (or by hand in tests).
Times are epoch milliseconds of step *ends*: the observation at ``t`` summarises the
samples of ``[t - step, t)``.
"""

from __future__ import annotations

from bisect import bisect_right
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from common.times import require_range
from wire import MachineRef, to_epoch_ms


@dataclass(frozen=True)
class RunningTime:
    """Running intervals of a machine, with prefix sums to answer "seconds run between"."""

    intervals: tuple[tuple[int, int], ...] = ()  # sorted, non-overlapping [start, end) ms
    _starts: tuple[int, ...] = field(init=False, repr=False, compare=False)
    _prefix: tuple[int, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        prefix, total = [0], 0
        for start, end in self.intervals:
            total += end - start
            prefix.append(total)
        object.__setattr__(self, "_starts", tuple(s for s, _ in self.intervals))
        object.__setattr__(self, "_prefix", tuple(prefix))

    def _until(self, t: int) -> int:
        """Running milliseconds of all intervals before ``t``."""
        i = bisect_right(self._starts, t)
        if i == 0:
            return 0
        start, end = self.intervals[i - 1]
        return self._prefix[i - 1] + (min(end, t) - start)

    def seconds(self, a: int, b: int) -> float:
        """Running seconds within ``[a, b)`` (epoch ms)."""
        return 0.0 if b <= a else (self._until(b) - self._until(a)) / 1000


@dataclass(frozen=True)
class ServiceData:
    """Inputs of a service-interval rule for one machine and one maintenance kind."""

    run_before: float  # running seconds from the last record (or first data) to the window start
    records: tuple[int, ...] = ()  # maintenance records inside the window (ms, sorted)
    running: RunningTime = RunningTime()  # running intervals inside the window


@dataclass(frozen=True)
class MachineData:
    """One machine's observations within the window."""

    ref: MachineRef
    kind: str | None = None
    values: dict[str, dict[int, float]] = field(default_factory=dict)  # name → step → mean
    states: dict[int, str] = field(default_factory=dict)  # step → last state in the step
    seen: frozenset[int] = frozenset()  # steps with any telemetry
    state_before: str | None = None  # last state before the window
    last_seen_before: int | None = None  # last telemetry before the window (ms)
    status_before: tuple[int, bool] | None = None  # last (ts, online) before the window
    status: tuple[tuple[int, bool], ...] = ()  # (ts, online) inside the window, sorted
    service: dict[str, ServiceData] = field(default_factory=dict)  # maintenance kind → data
    # Maintenance records (ms, sorted) up to the window's end, by kind: a commissioning
    # reference is learnt anew after each.
    records: dict[str, tuple[int, ...]] = field(default_factory=dict)

    def state_before_step(self, t: int) -> str | None:
        """The last state known before the step ending at ``t`` (in the window or before)."""
        earlier = [s for s in self.states if s < t]
        return self.states[max(earlier)] if earlier else self.state_before

    def last_seen_before_step(self, t: int) -> int | None:
        """When the machine was last heard from before the step ending at ``t``."""
        return max((s for s in self.seen if s < t), default=self.last_seen_before)


@dataclass(frozen=True)
class DataWindow:
    """All machines' data for ``[start, end)``, evaluated at steps ``start+step … end``."""

    start: datetime
    end: datetime
    step: timedelta
    machines: dict[str, MachineData] = field(default_factory=dict)

    def steps(self) -> range:
        """Step end times (epoch ms)."""
        step_ms = int(self.step / timedelta(milliseconds=1))
        return range(to_epoch_ms(self.start) + step_ms, to_epoch_ms(self.end) + 1, step_ms)


def align(ts: datetime, step: timedelta) -> datetime:
    """``ts`` floored to the epoch-aligned step grid."""
    step_ms = int(step / timedelta(milliseconds=1))
    ms = to_epoch_ms(ts)
    return ts - timedelta(milliseconds=ms % step_ms)


def grid_span(
    start: datetime, end: datetime, step: timedelta, what: str
) -> tuple[datetime, datetime]:
    """``[start, end)`` widened to the step grid; ``what`` (``replay``) names the caller in
    the :class:`common.times.TimeError` for a naive or empty range."""
    require_range(start, end, what)
    lo, hi = align(start, step), align(end, step)
    return lo, hi if hi == end else hi + step
