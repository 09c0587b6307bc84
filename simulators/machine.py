"""``MachineSim``: one simulated machine that yields sensor readings as its clock advances.

Readings are generated in fixed one-hour blocks counted from ``start`` and handed out up to
the requested time, so the output does not depend on how ``advance`` calls are split.
Internally every time is integer epoch milliseconds; that makes state-change instants,
sample times and the ground truth add up exactly.
"""

from __future__ import annotations

import bisect
import gc
import hashlib
import math
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from typing import Any, NamedTuple

import numpy as np
import numpy.typing as npt

from simulators.calendar import ShiftCalendar, from_ms, to_ms
from simulators.parts import PARTS_GOOD_TOTAL, PARTS_TOTAL, PartCounter
from simulators.signals import MODELS, RUNNING, FloatArray, Inputs, IntArray
from simulators.spec import MachineSpec
from simulators.states import Failure, timeline
from simulators.truth import GroundTruth
from simulators.wear import WearCurve
from wire import STATES, Sample, State

BLOCK_MS = 3_600_000  # generation block; fixed so output is independent of advance() splits
HOUR_MS = 3_600_000
FAILURE_FAULT_MS = 45 * 60_000  # a failed machine stands in fault until the fitter arrives
RUN_COUNTER = "run_seconds_total"
_CODE: dict[State, int] = {state: code for code, state in enumerate(STATES)}


class Reading(NamedTuple):
    """One sample as the machine's sensor gateway takes it, with its counters beside it."""

    sample: Sample
    # {"run_seconds_total": hour meter at sample.ts}, and for a machine that makes parts
    # "parts_total" and "parts_good_total" (parts completed before sample.ts)
    counters: dict[str, float]


def _ceil_ms(ts: datetime) -> int:
    if ts.tzinfo is None or ts.utcoffset() is None:
        raise ValueError(f"advance() needs a timezone-aware time, got {ts!r}")
    floor = to_ms(ts)
    return floor if from_ms(floor) == ts else floor + 1


@contextmanager
def _gc_paused() -> Iterator[None]:
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _merge(windows: list[tuple[int, int]]) -> list[tuple[int, int]]:
    merged: list[tuple[int, int]] = []
    for lo, hi in sorted(windows):
        if merged and lo <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(hi, merged[-1][1]))
        else:
            merged.append((lo, hi))
    return merged


def _streams(spec: MachineSpec) -> list[np.random.Generator]:
    """State process, period set points, signal noise, identity, wear, parts: independent streams
    (a stream added later leaves the earlier ones, and so their output, unchanged)."""
    machine = int.from_bytes(hashlib.blake2b(spec.machine.encode(), digest_size=8).digest())
    root = np.random.SeedSequence([spec.seed % 2**64, machine])
    return [np.random.default_rng(child) for child in root.spawn(6)]


class MachineSim:
    """A simulated machine: true states on a shift calendar, sensors, hour meter, ground truth.

    >>> sim = MachineSim(MachineSpec("cnc-01", "cnc_mill"), start)
    >>> readings = sim.advance(start + timedelta(hours=1))   # 360 readings and the changes
    """

    def __init__(
        self, spec: MachineSpec, start: datetime, *, sample_interval_s: float = 10.0
    ) -> None:
        if start.tzinfo is None or start.utcoffset() is None:
            raise ValueError(f"MachineSim start must be timezone-aware, got {start!r}")
        interval_ms = round(sample_interval_s * 1000)
        if interval_ms < 1:
            raise ValueError(f"sample_interval_s must be at least 0.001 s, got {sample_interval_s}")
        self.spec = spec
        self.sample_interval_ms = interval_ms
        self._model = MODELS[spec.kind]
        self._start_ms = to_ms(start)
        self.start = from_ms(self._start_ms)
        states_rng, periods_rng, self._signal_rng, identity, wear_rng, parts_rng = _streams(spec)
        self._periods_rng = periods_rng
        self._ambient = float(identity.uniform(19.0, 25.0))
        # A used machine: its hour meter starts at a few hundred to a few thousand hours.
        self.run_seconds_start = float(identity.integers(200 * 3600, 6000 * 3600))

        self._onset_ms: int | None = None
        self._failure_ms: int | None = None
        self._wear: WearCurve | None = None
        failure = None
        if (degradation := spec.degradation) is not None:
            failure_ms = to_ms(degradation.failure_at)
            if failure_ms > self._start_ms:  # a failure before the start is already repaired
                self._onset_ms = to_ms(degradation.onset)
                self._failure_ms = failure_ms
                failure = Failure(
                    failure_ms, FAILURE_FAULT_MS, round(degradation.repair_hours * HOUR_MS)
                )
                self._wear = WearCurve(
                    self._onset_ms,
                    failure_ms,
                    degradation.profile,
                    level=degradation.level,
                    knee=degradation.knee,
                    noise=degradation.noise,
                    rng=wear_rng,
                )
        self._failure = failure
        self._blackouts = _merge([(to_ms(lo), _ceil_ms(hi)) for lo, hi in spec.blackouts])
        self._parts = (
            PartCounter(spec.ideal_cycle_s, parts_rng) if spec.ideal_cycle_s is not None else None
        )
        self._calendar = spec.calendar or ShiftCalendar(spec.timezone)
        self._segments = timeline(
            self._calendar,
            self._start_ms,
            self._model.timing,
            states_rng,
            failure,
            None if spec.rush is None else (to_ms(spec.rush[0]), _ceil_ms(spec.rush[1])),
        )

        # Segment table (parallel lists), appended as the state process unrolls.
        self._seg_start: list[int] = []
        self._seg_end: list[int] = []
        self._seg_code: list[int] = []
        self._seg_load: list[float] = []
        self._seg_aux: list[float] = []
        self._seg_run_before: list[int] = []  # running ms from start to the segment start
        # Per lagged channel (outer), per segment (inner): value at the start, steady target.
        self._seg_lag0: list[list[float]] = [[] for _ in self._model.lags]
        self._seg_target: list[list[float]] = [[] for _ in self._model.lags]
        self._seg_first = 0  # first segment that can still overlap a block to generate

        self._generated_ms = self._start_ms
        self._pending: list[Reading] = []
        self._pending_ts: list[int] = []
        self._pos = 0
        self._until_ms = self._start_ms
        self._emitted = 0

    # -- public ----------------------------------------------------------------------------

    def advance(self, until: datetime) -> list[Reading]:
        """All readings with start <= ts < until not yet returned, in time order. Called repeatedly
        with growing `until` (the fleet runner steps the clock); deterministic for a given spec,
        start and interval regardless of how the calls are split."""
        until_ms = _ceil_ms(until)
        while self._generated_ms < until_ms:
            self._generate(self._generated_ms, self._generated_ms + BLOCK_MS)
            self._generated_ms += BLOCK_MS
        end = bisect.bisect_left(self._pending_ts, until_ms, lo=self._pos)
        out = self._pending[self._pos : end]
        self._pos = end
        if self._pos > 2_000:  # drop handed-out readings (memory stays flat at max speed)
            del self._pending[: self._pos], self._pending_ts[: self._pos]
            self._pos = 0
        self._emitted += len(out)
        self._until_ms = max(self._until_ms, until_ms)
        return out

    @property
    def truth(self) -> GroundTruth:
        """The true history from ``start`` up to the latest ``advance`` time."""
        return self._truth(self._until_ms)

    @property
    def failure_at(self) -> datetime | None:
        """When the worn bearing fails (planned, even if not simulated yet)."""
        return None if self._failure_ms is None else from_ms(self._failure_ms)

    def state_at(self, ts: datetime) -> State:
        """The true state at ``ts`` (for tests and tools; unrolls the state process)."""
        t = to_ms(ts)
        if t < self._start_ms:
            raise ValueError(f"{ts.isoformat()} is before the simulation start")
        self._extend(t + 1)
        index = bisect.bisect_right(self._seg_start, t) - 1
        return STATES[self._seg_code[index]]

    # -- state process ---------------------------------------------------------------------

    def _extend(self, to_ms_: int) -> None:
        """Unroll the state process until the segments cover ``[start, to_ms_)``."""
        model = self._model
        while not self._seg_end or self._seg_end[-1] < to_ms_:
            begin, end, state = next(self._segments)
            code = _CODE[state]
            load = 0.0
            if code == RUNNING:
                load = float(self._periods_rng.uniform(*model.running_load))
            aux = model.aux(self._periods_rng, code)
            targets = [lag.target(code, load) for lag in model.lags]
            if self._seg_start:
                prev = len(self._seg_start) - 1
                run_before = self._seg_run_before[prev] + (
                    self._seg_end[prev] - self._seg_start[prev]
                    if self._seg_code[prev] == RUNNING
                    else 0
                )
                span_s = (self._seg_end[prev] - self._seg_start[prev]) / 1000.0
                lag0 = [
                    goal + (x0 - goal) * math.exp(-span_s / lag.tau_s)
                    for lag, x0, goal in zip(
                        model.lags,
                        [column[prev] for column in self._seg_lag0],
                        [column[prev] for column in self._seg_target],
                        strict=True,
                    )
                ]
                targets = [
                    min(goal, x0) if lag.rises_only_running and code != RUNNING else goal
                    for lag, goal, x0 in zip(model.lags, targets, lag0, strict=True)
                ]
            else:
                run_before = 0
                lag0 = list(targets)  # the machine has been in its first state for a while
            if self._parts is not None:
                self._parts.add(begin, end, code == RUNNING)
            self._seg_start.append(begin)
            self._seg_end.append(end)
            self._seg_code.append(code)
            self._seg_load.append(load)
            self._seg_aux.append(aux)
            self._seg_run_before.append(run_before)
            for channel, (x0, goal) in enumerate(zip(lag0, targets, strict=True)):
                self._seg_lag0[channel].append(x0)
                self._seg_target[channel].append(goal)

    # -- sampling --------------------------------------------------------------------------

    def _timestamps(self, lo: int, hi: int) -> IntArray:
        start, step = self._start_ms, self.sample_interval_ms
        first = -((start - lo) // step)  # ceil((lo - start) / step)
        last = -((start - hi) // step)
        grid = start + step * np.arange(first, last, dtype=np.int64)
        first_seg = bisect.bisect_left(self._seg_start, lo, lo=self._seg_first)
        last_seg = bisect.bisect_left(self._seg_start, hi, lo=first_seg)
        changes = np.asarray(self._seg_start[first_seg:last_seg], dtype=np.int64)
        resumes = np.asarray([b for _, b in self._blackouts if lo <= b < hi], dtype=np.int64)
        ts = np.unique(np.concatenate([grid, changes, resumes]))
        for b0, b1 in self._blackouts:
            if b0 < hi and b1 > lo:
                ts = ts[(ts < b0) | (ts >= b1)]
        return ts

    def _generate(self, lo: int, hi: int) -> None:
        self._extend(hi)
        ts = self._timestamps(lo, hi)
        # Segments that can overlap this block: from the one holding ``lo`` on.
        self._seg_first = max(bisect.bisect_right(self._seg_start, lo) - 1, 0)
        base = self._seg_first
        seg_start = np.asarray(self._seg_start[base:], dtype=np.int64)
        if ts.size == 0:
            return
        idx = np.searchsorted(seg_start, ts, side="right") - 1
        model = self._model

        def per_reading(column: list[float] | list[int], dtype: type) -> npt.NDArray[Any]:
            return np.asarray(column[base:], dtype=dtype)[idx]

        codes = per_reading(self._seg_code, np.int8)
        since_ms = ts - seg_start[idx]
        since_s = since_ms / 1000.0
        lag: dict[str, FloatArray] = {}
        rise: dict[str, FloatArray] = {}
        ambient = self._ambient + 1.5 * np.sin(2 * np.pi * ((ts / HOUR_MS - 9.0) / 24.0))
        for channel, lag_model in enumerate(model.lags):
            x0 = per_reading(self._seg_lag0[channel], np.float64)
            goal = per_reading(self._seg_target[channel], np.float64)
            value = goal + (x0 - goal) * np.exp(-since_s / lag_model.tau_s)
            rise[lag_model.name] = value
            lag[lag_model.name] = value + ambient if lag_model.over_ambient else value
        inputs = Inputs(
            t_ms=ts,
            state=codes,
            load=per_reading(self._seg_load, np.float64),
            aux=per_reading(self._seg_aux, np.float64),
            lag=lag,
            lag_rise=rise,
            severity=self._severity(ts),
            ambient=ambient,
            rng=self._signal_rng,
        )
        columns = model.compute(inputs, model)
        values = [
            np.round(column, digits).tolist()
            for column, digits in zip(columns, model.decimals, strict=True)
        ]
        run_ms = per_reading(self._seg_run_before, np.int64) + np.where(
            codes == RUNNING, since_ms, 0
        )
        meter = (self.run_seconds_start + run_ms / 1000.0).tolist()
        parts = None
        if self._parts is not None:
            total, good = self._parts.counters(ts, idx + base)
            parts = (total.astype(np.float64).tolist(), good.astype(np.float64).tolist())
        self._emit(ts.tolist(), codes.tolist(), values, meter, parts)

    def _emit(
        self,
        ts: list[int],
        codes: list[int],
        values: list[list[float]],
        meter: list[float],
        parts: tuple[list[float], list[float]] | None,
    ) -> None:
        # The hot loop of the simulator (several objects per reading): comprehensions,
        # model_construct (no validation: names and numbers are ours and known good), and
        # the cyclic GC paused, since these objects hold no cycles and a collection pass
        # per few hundred allocations nearly doubled the time.
        names = self._model.names
        construct = Sample.model_construct
        epoch = from_ms(0)
        ms = timedelta(milliseconds=1)
        states = [STATES[code] for code in codes]
        with _gc_paused():
            rows = [dict(zip(names, row, strict=True)) for row in zip(*values, strict=True)]
            samples = [
                construct(ts=epoch + t * ms, state=state, values=row)
                for t, state, row in zip(ts, states, rows, strict=True)
            ]
            if parts is None:
                counters = [{RUN_COUNTER: hours} for hours in meter]
            else:
                counters = [
                    {RUN_COUNTER: hours, PARTS_TOTAL: total, PARTS_GOOD_TOTAL: good}
                    for hours, total, good in zip(meter, *parts, strict=True)
                ]
            self._pending.extend(map(Reading, samples, counters))
        self._pending_ts.extend(ts)

    def _severity(self, ts: IntArray) -> FloatArray:
        # The profile's curve up to the failure; a new bearing after the repair.
        if self._wear is None:
            return np.zeros(ts.size)
        return self._wear.severity(ts)

    # -- ground truth ----------------------------------------------------------------------

    def _truth(self, end_ms: int) -> GroundTruth:
        start_ms = self._start_ms
        self._extend(end_ms)
        spent: dict[int, list[int]] = {}
        first_hour = start_ms - start_ms % HOUR_MS
        for hour in range(first_hour, end_ms if end_ms > start_ms else first_hour, HOUR_MS):
            spent[hour] = [0] * len(STATES)
        unobserved: dict[int, int] = {}

        def add(lo: int, hi: int, slot: int | None) -> None:
            while lo < hi:
                hour = lo - lo % HOUR_MS
                cut = min(hi, hour + HOUR_MS)
                if slot is None:
                    unobserved[hour] = unobserved.get(hour, 0) + cut - lo
                else:
                    spent[hour][slot] += cut - lo
                lo = cut

        blackouts = [
            (max(b0, start_ms), min(b1, end_ms))
            for b0, b1 in self._blackouts
            if b0 < end_ms and b1 > start_ms
        ]
        for b0, b1 in blackouts:
            add(b0, b1, None)
        for begin, end, code in zip(self._seg_start, self._seg_end, self._seg_code, strict=True):
            lo, hi = max(begin, start_ms), min(end, end_ms)
            for b0, b1 in blackouts:  # observed pieces: the segment minus blackouts
                if b1 <= lo or b0 >= hi:
                    continue
                if lo < b0:
                    add(lo, b0, code)
                lo = max(lo, b1)
            if lo < hi:
                add(lo, hi, code)
            if end >= end_ms:
                break

        scheduled: dict[int, int] = {}
        for lo, hi, sign in self._scheduled(start_ms, end_ms):
            while lo < hi:
                hour = lo - lo % HOUR_MS
                cut = min(hi, hour + HOUR_MS)
                scheduled[hour] = scheduled.get(hour, 0) + sign * (cut - lo)
                lo = cut

        onset = failure = repaired = runaway = None
        profile = None
        if self._wear is not None and self._failure_ms is not None and self._onset_ms is not None:
            if self._onset_ms < end_ms:
                onset = from_ms(self._onset_ms)
                profile = self._wear.profile
            knee = self._wear.knee_ms
            if knee is not None and knee < end_ms:
                runaway = from_ms(knee)
            if self._failure_ms < end_ms:
                failure = from_ms(self._failure_ms)
            assert self._failure is not None
            back = self._failure_ms + self._failure.fault_ms + self._failure.repair_ms
            if back <= end_ms:
                repaired = from_ms(back)
        return GroundTruth(
            machine=self.spec.machine,
            kind=self.spec.kind,
            hours={
                from_ms(hour): {state: ms / 1000.0 for state, ms in zip(STATES, row, strict=True)}
                for hour, row in spent.items()
            },
            unobserved={from_ms(hour): ms / 1000.0 for hour, ms in unobserved.items() if ms},
            degradation_onset=onset,
            failure_at=failure,
            samples=self._emitted,
            site=self.spec.site,
            line=self.spec.line,
            start=self.start,
            end=from_ms(end_ms),
            run_seconds_start=self.run_seconds_start,
            repaired_at=repaired,
            degradation_profile=profile,
            runaway_at=runaway,
            scheduled={from_ms(hour): ms / 1000.0 for hour, ms in scheduled.items() if ms},
            ideal_cycle_s=self.spec.ideal_cycle_s,
            parts_start=(
                (self._parts.total_start, self._parts.good_start) if self._parts else None
            ),
            parts=(
                {from_ms(h): n for h, n in self._parts.per_hour(start_ms, end_ms).items()}
                if self._parts
                else {}
            ),
        )

    def _scheduled(self, lo: int, hi: int) -> Iterator[tuple[int, int, int]]:
        """The calendar's staffed windows in ``[lo, hi)`` (+1) and the breaks in them (-1)."""
        for w0, w1 in self._calendar.windows(lo):
            if w0 >= hi:
                break
            if w1 > lo:
                yield max(w0, lo), min(w1, hi), 1
        for b0, b1 in self._calendar.breaks(lo):
            if b0 >= hi:
                break
            if b1 > lo:
                yield max(b0, lo), min(b1, hi), -1
