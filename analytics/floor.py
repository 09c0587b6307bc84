"""The plant floor per shift run: planned, running and stopped time, stops and parts.

For each machine, each run of its shift schedule (``analytics.shifts``) that *starts* in
the range asked for gets exact integer figures (``RunCounts``) from the machine's raw
samples (state semantics of ``analytics.usage``) and part counters
(``analytics.parts``), and its stops (``analytics.stops``). A run still under way counts
only the planned time up to ``now``. OEE (``analytics.oee``) and the downtime report
(``analytics.downtime``) are sums of these.

>>> runs = floor_runs(client, plant, ["plant1/cnc-01"], start, end)  # doctest: +SKIP
>>> runs[0].runs[0].running_ms / runs[0].runs[0].planned_ms            # doctest: +SKIP
0.8125
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import numpy as np

from analytics.machines import (
    MachineKey,
    MachineRef,
    key_clause,
    resolve_machines,
    telemetry_keys,
)
from analytics.parts import IntArray, parts_per_window
from analytics.periods import to_ms
from analytics.plant import MachinePlan, Plant
from analytics.rollups import machine_tags
from analytics.shifts import ShiftRun
from analytics.stops import RUNNING, Intervals, Stop, state_intervals, stops_in
from analytics.usage import (
    CARRY_HORIZON,
    DEFAULT_MAX_GAP,
    duration_ms,
    load_samples,
    telemetry_fields,
)
from store import InfluxClient, quote_ident
from store.schema import FIELD_PARTS_GOOD_TOTAL, FIELD_PARTS_TOTAL, TAG_LINE, TELEMETRY

COUNTER_LOOK = timedelta(days=7)  # how far past the range a part-counter reading is looked for


@dataclass(frozen=True)
class RunCounts:
    """One machine's exact figures for one shift run (milliseconds and parts)."""

    run: ShiftRun
    planned_ms: int  # planned production time (the run less its breaks, up to now)
    running_ms: int  # running within it
    known_ms: int  # time with a known state within it
    stop_ms: int  # stops of at least min_stop
    stops: int
    short_stop_ms: int  # stops shorter than min_stop
    parts_total: int | None  # parts made in planned time (None: no parts_total counter)
    parts_good: int | None  # good ones (None: no parts_good_total counter)


@dataclass(frozen=True)
class MachineFloor:
    """One machine over a range: its plan, its runs and its stops (of at least min_stop)."""

    key: MachineKey
    line: str
    plan: MachinePlan
    runs: list[RunCounts] = field(default_factory=list)
    stops: list[tuple[ShiftRun, Stop]] = field(default_factory=list)


@dataclass(frozen=True)
class CounterSeries:
    """Part-counter readings of one machine, sorted (``good`` None: not reported)."""

    ts_ms: IntArray
    total: IntArray
    good: IntArray | None


def runs_starting(plan: MachinePlan, lo_ms: int, hi_ms: int, now_ms: int) -> list[ShiftRun]:
    """The runs of ``plan`` that start in ``[lo_ms, hi_ms)`` and before ``now_ms``."""
    if plan.schedule is None:
        return []
    return [r for r in plan.schedule.runs(lo_ms, hi_ms) if lo_ms <= r.start_ms < min(hi_ms, now_ms)]


def planned_windows(run: ShiftRun, now_ms: int) -> list[tuple[int, int]]:
    """The run's planned windows, cut at ``now_ms``."""
    return [(a, min(b, now_ms)) for a, b in run.planned if a < now_ms]


def count_runs(
    runs: Sequence[ShiftRun],
    intervals: Intervals,
    counters: CounterSeries | None,
    plant: Plant,
    now_ms: int,
    data_end_ms: int | None = None,
) -> tuple[list[RunCounts], list[tuple[ShiftRun, Stop]]]:
    """Pure: each run's figures and its stops of at least min_stop."""
    windows = [planned_windows(run, now_ms) for run in runs]
    flat = [w for ws in windows for w in ws]
    owner = [i for i, ws in enumerate(windows) for _ in ws]
    running = intervals.cumulative(RUNNING)
    total_by_run = good_by_run = None
    if counters is not None:
        per_window = parts_per_window(counters.ts_ms, counters.total, running, flat)
        total_by_run = np.bincount(owner, weights=per_window, minlength=len(runs)).astype(int)
        if counters.good is not None:
            per_window = parts_per_window(counters.ts_ms, counters.good, running, flat)
            good_by_run = np.bincount(owner, weights=per_window, minlength=len(runs)).astype(int)
    min_ms = duration_ms(plant.min_stop)
    out: list[RunCounts] = []
    listed: list[tuple[ShiftRun, Stop]] = []
    for i, run in enumerate(runs):
        planned = running_ms = known = 0
        for lo, hi in windows[i]:
            piece = intervals.clip(lo, hi)
            planned += hi - lo
            running_ms += piece.ms(RUNNING)
            known += piece.ms()
        stops = stops_in(intervals, windows[i], plant.stop_states, data_end_ms)
        long = [s for s in stops if s.ms >= min_ms]
        listed += [(run, s) for s in long]
        out.append(
            RunCounts(
                run=run,
                planned_ms=planned,
                running_ms=running_ms,
                known_ms=known,
                stop_ms=sum(s.ms for s in long),
                stops=len(long),
                short_stop_ms=sum(s.ms for s in stops if s.ms < min_ms),
                parts_total=None if total_by_run is None else int(total_by_run[i]),
                parts_good=None if good_by_run is None else int(good_by_run[i]),
            )
        )
    return out, listed


# -- I/O ----------------------------------------------------------------------------------


def _counter_rows(client: InfluxClient, where: str) -> list[tuple[int, float | None, float | None]]:
    rows: list[tuple[int, float | None, float | None]] = []
    for series in client.query_series(where):
        rows += [(int(r[0]), r[1], r[2]) for r in series.values]
    return rows


def load_counters(
    client: InfluxClient, key: MachineKey, lo_ms: int, hi_ms: int
) -> CounterSeries | None:
    """Part-counter readings in ``[lo_ms, hi_ms]``, the last one before and the first one
    after (within ``COUNTER_LOOK``); None when the machine reports no ``parts_total``."""
    fields = f"{quote_ident(FIELD_PARTS_TOTAL)}, {quote_ident(FIELD_PARTS_GOOD_TOTAL)}"
    look = duration_ms(COUNTER_LOOK)
    base = f"SELECT {fields} FROM {quote_ident(TELEMETRY)} WHERE {key_clause(key)}"
    rows = _counter_rows(
        client,
        f"{base} AND time >= {lo_ms - look}ms AND time < {lo_ms}ms ORDER BY time DESC LIMIT 1",
    )
    rows += _counter_rows(client, f"{base} AND time >= {lo_ms}ms AND time <= {hi_ms}ms")
    rows += _counter_rows(
        client, f"{base} AND time > {hi_ms}ms AND time < {hi_ms + look}ms ORDER BY time ASC LIMIT 1"
    )
    rows = sorted({r[0]: r for r in rows if r[1] is not None}.values())
    if not rows:
        return None
    ts = np.asarray([r[0] for r in rows], np.int64)
    total_values = np.asarray([round(r[1] or 0) for r in rows], np.int64)
    has_good = all(r[2] is not None for r in rows)
    good = np.asarray([round(r[2] or 0) for r in rows], np.int64) if has_good else None
    return CounterSeries(ts, total_values, good)


def machine_floor(
    client: InfluxClient,
    plant: Plant,
    key: MachineKey,
    line: str,
    lo_ms: int,
    hi_ms: int,
    now_ms: int,
    *,
    fields: Sequence[str],
    max_gap: timedelta = DEFAULT_MAX_GAP,
    ending_after_ms: int | None = None,
) -> MachineFloor:
    """One machine's runs starting in ``[lo_ms, hi_ms)`` (and ending after
    ``ending_after_ms``, if given); see the module docstring."""
    plan = plant.plan(key)
    runs = runs_starting(plan, lo_ms, hi_ms, now_ms)
    if ending_after_ms is not None:
        runs = [r for r in runs if r.end_ms > ending_after_ms]
    if not runs:
        return MachineFloor(key, line, plan)
    first = runs[0].start_ms
    last = min(max(r.end_ms for r in runs), now_ms)
    counters = load_counters(client, key, first, last)
    begin, end = first, last
    if counters is not None:  # the running time between readings around the range
        begin = min(begin, int(counters.ts_ms[0]))
        end = max(end, int(counters.ts_ms[-1]))
    samples = load_samples(client, key, begin, end, max_gap=max_gap, fields=fields)
    intervals = state_intervals(
        samples.ts_ms, samples.codes, duration_ms(max_gap), duration_ms(CARRY_HORIZON)
    )
    data_end = int(intervals.ends[-1]) if intervals.ends.size else None
    counts, stops = count_runs(runs, intervals, counters, plant, now_ms, data_end)
    return MachineFloor(key, line, plan, counts, stops)


def floor_runs(
    client: InfluxClient,
    plant: Plant,
    machines: Iterable[MachineRef] | None,
    start: datetime,
    end: datetime,
    *,
    now: datetime | None = None,
    max_gap: timedelta = DEFAULT_MAX_GAP,
    workers: int = 4,
) -> list[MachineFloor]:
    """Every machine's (default: all with telemetry) runs that start in ``[start, end)``,
    sorted by site and id."""
    if machines is None:
        keys = telemetry_keys(client)
    else:
        keys = sorted({k for k in resolve_machines(client, machines).values() if k.site})
    if not keys:
        return []
    now_ms = to_ms(now or datetime.now(UTC))
    lo, hi = to_ms(start), to_ms(end)
    fields = telemetry_fields(client)
    tags = machine_tags(client, keys)

    def one(key: MachineKey) -> MachineFloor:
        line = tags[key].get(TAG_LINE, "")
        return machine_floor(
            client, plant, key, line, lo, hi, now_ms, fields=fields, max_gap=max_gap
        )

    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        return list(pool.map(one, keys))
