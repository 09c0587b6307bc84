"""Usage of machines: seconds per state, known time and hour-meter time over any interval.

The maths are pure functions over numpy arrays in integer milliseconds (exact sums, so
hourly rollups add up to exactly what a direct computation gives); the I/O helpers that
read raw ``telemetry`` samples from InfluxDB are at the bottom.

Semantics (docs/design.md "Billing semantics", docs/billing.md):

- A sample's state holds from its ``ts`` until the next sample of the machine, but never
  longer than ``max_gap`` (default 5 min); time past that is *unknown* and never billed.
- A value-only sample (no ``state``) is a heartbeat: it continues the state in effect just
  before it, provided the previous sample is within ``max_gap`` (otherwise its state is
  unknown until the next sample that carries one) and the chain of heartbeats goes back
  to a sample with a state at most ``carry_horizon`` (default 24 h) earlier.
- The state at an interval's start comes from the last sample before it (if within
  ``max_gap``). Intervals are cut exactly at their edges.
- Coverage = known seconds / interval seconds; a *gap* is a maximal stretch of unknown
  time, and each bucket counts the gaps that reach into it.

>>> usage = machine_usage(client, "plant1/cnc-01", start, end)  # doctest: +SKIP
>>> usage.state_seconds["running"], usage.coverage       # doctest: +SKIP
(27000.0, 1.0)
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

import numpy as np
import numpy.typing as npt

from analytics.counters import (
    ANOMALY_KINDS,
    EVENT_LIMIT,
    AnomalyKind,
    BoolArray,
    CounterEvent,
    CounterRules,
    CounterTolerance,
    IntArray,
    anomaly_counts,
    counter_by_bucket,
    counter_mismatch,
    to_counter_ms,
)
from analytics.machines import (
    MachineKey,
    MachineRef,
    Ref,
    key_clause,
    parse_machine,
    resolve_machines,
)
from analytics.periods import as_datetime, to_ms
from store import InfluxClient, quote_ident
from store.schema import FIELD_RUN_SECONDS_TOTAL, FIELD_STATE, TAG_MACHINE, TELEMETRY
from wire import STATES

Int8Array = npt.NDArray[np.int8]

DEFAULT_MAX_GAP = timedelta(minutes=5)
CARRY_HORIZON = timedelta(hours=24)
STATE_CODE: dict[str, int] = {state: code for code, state in enumerate(STATES)}
NO_STATE = -1  # a value-only sample, or (after carrying) an unknown state
N_STATES = len(STATES)


def duration_ms(delta: timedelta) -> int:
    """A duration as whole milliseconds."""
    return delta // timedelta(milliseconds=1)


# -- pure maths -----------------------------------------------------------------------------


def effective_states(
    ts_ms: IntArray, codes: Int8Array, max_gap_ms: int, carry_horizon_ms: int
) -> Int8Array:
    """The state in effect at each sample (``NO_STATE`` where unknown).

    ``ts_ms`` is sorted and unique; ``codes`` holds each sample's own state code or
    ``NO_STATE`` for a value-only sample. A chain of value-only samples continues the
    state of the sample that starts it while each gap is at most ``max_gap_ms`` and the
    chain is at most ``carry_horizon_ms`` long.
    """
    n = ts_ms.size
    if n == 0:
        return np.zeros(0, np.int8)
    starts_chain = np.ones(n, np.bool_)
    starts_chain[1:] = (codes[1:] != NO_STATE) | (np.diff(ts_ms) > max_gap_ms)
    anchor = np.maximum.accumulate(np.where(starts_chain, np.arange(n), 0))
    carried = codes[anchor]
    too_old = ts_ms - ts_ms[anchor] > carry_horizon_ms
    return np.where(too_old, NO_STATE, carried).astype(np.int8)


def state_ms_by_bucket(
    ts_ms: IntArray,
    codes: Int8Array,
    edges_ms: IntArray,
    max_gap_ms: int,
    carry_horizon_ms: int = duration_ms(CARRY_HORIZON),
) -> tuple[IntArray, IntArray]:
    """Milliseconds per state in each bucket ``[edges[k], edges[k+1])``, and known ms.

    Returns ``(state_ms, known_ms)`` with shapes ``(buckets, len(STATES))`` and
    ``(buckets,)``. Samples outside the edges still count for what they hold inside.
    """
    edges_ms = np.asarray(edges_ms, dtype=np.int64)
    n_buckets = max(edges_ms.size - 1, 0)
    if ts_ms.size == 0 or n_buckets == 0:
        return np.zeros((n_buckets, N_STATES), np.int64), np.zeros(n_buckets, np.int64)
    effective = effective_states(ts_ms, codes, max_gap_ms, carry_horizon_ms)
    ends = np.empty_like(ts_ms)
    ends[:-1] = np.minimum(ts_ms[1:], ts_ms[:-1] + max_gap_ms)
    ends[-1] = ts_ms[-1] + max_gap_ms
    lengths = ends - ts_ms
    # F_s(t): ms spent in state s before instant t. Bucket amount = F_s(hi) - F_s(lo).
    # Intervals never overlap, so F is a cumulative sum plus the part of the interval
    # that holds t.
    held = effective[None, :] == np.arange(N_STATES, dtype=np.int8)[:, None]
    cumulative = np.zeros((N_STATES, ts_ms.size + 1), np.int64)
    np.cumsum(np.where(held, lengths[None, :], 0), axis=1, out=cumulative[:, 1:])
    j = np.searchsorted(ts_ms, edges_ms, side="right") - 1
    jj = np.clip(j, 0, None)
    partial = np.clip(edges_ms - ts_ms[jj], 0, lengths[jj])
    before = cumulative[:, jj] + np.where(held[:, jj], partial[None, :], 0)
    before[:, j < 0] = 0
    state_ms = np.diff(before, axis=1).T.copy()
    return state_ms, state_ms.sum(axis=1)


def known_spans(
    ts_ms: IntArray,
    codes: Int8Array,
    max_gap_ms: int,
    carry_horizon_ms: int = duration_ms(CARRY_HORIZON),
) -> IntArray:
    """The stretches of known state ``[start, end)`` as an ``(n, 2)`` array, merged."""
    if ts_ms.size == 0:
        return np.zeros((0, 2), np.int64)
    effective = effective_states(ts_ms, codes, max_gap_ms, carry_horizon_ms)
    ends = ts_ms + max_gap_ms
    ends[:-1] = np.minimum(ends[:-1], ts_ms[1:])
    keep = (effective != NO_STATE) & (ends > ts_ms)
    starts, stops = ts_ms[keep], ends[keep]
    if starts.size == 0:
        return np.zeros((0, 2), np.int64)
    new = np.ones(starts.size, np.bool_)
    new[1:] = starts[1:] > stops[:-1]  # a stretch that starts where the last ended continues it
    first = np.flatnonzero(new)
    last = np.append(first[1:] - 1, starts.size - 1)
    return np.stack([starts[first], stops[last]], axis=1)


def unknown_spans(
    ts_ms: IntArray,
    codes: Int8Array,
    lo_ms: int,
    hi_ms: int,
    max_gap_ms: int,
    carry_horizon_ms: int = duration_ms(CARRY_HORIZON),
) -> IntArray:
    """The gaps (stretches of unknown state) within ``[lo_ms, hi_ms)``, as ``(n, 2)``."""
    known = known_spans(ts_ms, codes, max_gap_ms, carry_horizon_ms)
    known = np.clip(known, lo_ms, hi_ms)
    known = known[known[:, 1] > known[:, 0]]
    bounds = np.concatenate([[lo_ms], known.ravel(), [hi_ms]]).astype(np.int64)
    gaps = bounds.reshape(-1, 2)
    return gaps[gaps[:, 1] > gaps[:, 0]]


def gaps_by_bucket(
    ts_ms: IntArray,
    codes: Int8Array,
    edges_ms: IntArray,
    max_gap_ms: int,
    carry_horizon_ms: int = duration_ms(CARRY_HORIZON),
) -> tuple[IntArray, BoolArray, BoolArray]:
    """Per bucket: the gaps that reach into it, and whether it starts / ends inside one.

    Counted this way, buckets add up exactly: the gaps of several consecutive buckets are
    the sum of theirs, less one for each boundary that a gap crosses (ends in a gap, and
    the next starts in one).
    """
    edges_ms = np.asarray(edges_ms, dtype=np.int64)
    n = max(edges_ms.size - 1, 0)
    if n == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.bool_), np.zeros(0, np.bool_)
    gaps = unknown_spans(
        ts_ms, codes, int(edges_ms[0]), int(edges_ms[-1]), max_gap_ms, carry_horizon_ms
    )
    lo, hi = edges_ms[:-1], edges_ms[1:]
    starts, ends = gaps[:, 0], gaps[:, 1]
    count = np.searchsorted(starts, hi, side="left") - np.searchsorted(ends, lo, side="right")

    def inside(t: IntArray) -> BoolArray:
        j = np.searchsorted(starts, t, side="right") - 1
        if starts.size == 0:
            return np.zeros(t.size, np.bool_)
        return (j >= 0) & (ends[np.clip(j, 0, None)] > t)

    return count.astype(np.int64), inside(lo), inside(hi - 1)


# -- results --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Usage:
    """How one machine spent ``[start, end)``: seconds per state, known time, hour meter.

    ``known_seconds`` is the time with a known state (the sum of ``state_seconds``);
    ``gaps`` counts the stretches of unknown time reaching into the interval;
    ``counter_seconds`` is the billed hour-meter (``run_seconds_total``) delta, None when
    the machine sent no meter reading in the interval; ``counter_anomalies`` counts the
    meter's resets, wraps, glitches and jumps, and ``counter_events`` lists the first of them.
    """

    site: str
    machine: str
    start: datetime
    end: datetime
    state_seconds: dict[str, float]
    known_seconds: float
    counter_seconds: float | None
    gaps: int = 0
    counter_anomalies: dict[AnomalyKind, int] = field(default_factory=dict)
    counter_events: tuple[CounterEvent, ...] = ()

    @property
    def coverage(self) -> float:
        """Known seconds / interval seconds, 0..1."""
        # Timestamps, not end - start: same-zone datetimes subtract as wall-clock times.
        total = self.end.timestamp() - self.start.timestamp()
        return self.known_seconds / total if total > 0 else 0.0

    @property
    def running_seconds(self) -> float:
        return self.state_seconds.get("running", 0.0)

    @property
    def counter_reset(self) -> bool:
        """Whether the hour meter was reset (or wrapped around) in the interval."""
        return bool(self.counter_anomalies.get("reset") or self.counter_anomalies.get("wrap"))

    def counter_mismatch(self, tolerance: CounterTolerance | None = None) -> bool:
        """True when the hour meter disagrees with the running time beyond ``tolerance``."""
        return counter_mismatch(
            self.counter_seconds, self.running_seconds, tolerance or CounterTolerance()
        )


def first_events(groups: Iterable[Iterable[CounterEvent]]) -> tuple[CounterEvent, ...]:
    """The first ``EVENT_LIMIT`` events of several consecutive buckets."""
    return tuple(itertools.islice(itertools.chain.from_iterable(groups), EVENT_LIMIT))


@dataclass(frozen=True)
class UsageSeries:
    """One machine's exact usage per bucket, in integer milliseconds (what billing sums).

    ``edges_ms`` has one more entry than there are buckets; ``state_ms`` columns follow
    ``wire.STATES`` and ``counter_counts`` columns ``analytics.counters.ANOMALY_KINDS``.
    Gaps: ``gap_count`` per bucket, and whether it starts / ends inside a gap (so that
    consecutive buckets add up, see :func:`gaps_by_bucket`).
    """

    key: MachineKey
    edges_ms: IntArray
    state_ms: IntArray
    known_ms: IntArray
    counter_ms: IntArray
    counter_defined: BoolArray
    counter_counts: IntArray
    counter_events: tuple[tuple[CounterEvent, ...], ...]
    gap_count: IntArray
    gap_at_start: BoolArray
    gap_at_end: BoolArray

    def __len__(self) -> int:
        return int(self.known_ms.size)

    @classmethod
    def empty(cls, key: MachineKey, edges_ms: Sequence[int] | IntArray) -> UsageSeries:
        """No data at all: every bucket is one gap."""
        edges = np.asarray(edges_ms, dtype=np.int64)
        n = max(edges.size - 1, 0)
        return cls(
            key,
            edges,
            np.zeros((n, N_STATES), np.int64),
            np.zeros(n, np.int64),
            np.zeros(n, np.int64),
            np.zeros(n, np.bool_),
            np.zeros((n, len(ANOMALY_KINDS)), np.int64),
            ((),) * n,
            np.ones(n, np.int64),
            np.ones(n, np.bool_),
            np.ones(n, np.bool_),
        )

    def state_total_ms(self, states: Iterable[str]) -> IntArray:
        """Milliseconds per bucket in any of ``states``."""
        columns = sorted({STATE_CODE[s] for s in states})
        return self.state_ms[:, columns].sum(axis=1) if columns else self.known_ms * 0

    def gaps_in(self, buckets: Sequence[int]) -> int:
        """Gaps reaching into the union of ``buckets`` (in order; a gap that crosses from
        one bucket into the next one is counted once)."""
        total = 0
        for i, k in enumerate(buckets):
            total += int(self.gap_count[k])
            if i and buckets[i - 1] == k - 1 and self.gap_at_end[k - 1] and self.gap_at_start[k]:
                total -= 1
        return total

    def usage(self, k: int) -> Usage:
        """Bucket ``k`` as a :class:`Usage`."""
        return Usage(
            site=self.key.site,
            machine=self.key.machine,
            start=as_datetime(int(self.edges_ms[k])),
            end=as_datetime(int(self.edges_ms[k + 1])),
            state_seconds={
                state: int(self.state_ms[k, code]) / 1000 for state, code in STATE_CODE.items()
            },
            known_seconds=int(self.known_ms[k]) / 1000,
            counter_seconds=int(self.counter_ms[k]) / 1000 if self.counter_defined[k] else None,
            gaps=int(self.gap_count[k]),
            counter_anomalies=anomaly_counts(self.counter_counts[k]),
            counter_events=self.counter_events[k],
        )

    def usages(self) -> list[Usage]:
        return [self.usage(k) for k in range(len(self))]


# -- raw samples from InfluxDB --------------------------------------------------------------


@dataclass(frozen=True)
class Samples:
    """One machine's raw samples in a window, as arrays (sorted, unique times).

    ``counter_previous`` is ``(ts_ms, value_ms)`` of the last meter reading before the
    window; the counter arrays hold the readings inside it.
    """

    ts_ms: IntArray
    codes: Int8Array
    counter_ts_ms: IntArray
    counter_ms: IntArray
    counter_previous: tuple[int, int] | None

    @classmethod
    def none(cls) -> Samples:
        empty = np.zeros(0, np.int64)
        return cls(empty, np.zeros(0, np.int8), empty, empty, None)


def telemetry_fields(client: InfluxClient) -> list[str]:
    """Every field name of ``telemetry`` (a value-only sample has only some of them)."""
    series = client.query_series(f"SHOW FIELD KEYS FROM {quote_ident(TELEMETRY)}")
    return sorted({row[0] for s in series for row in s.values})


def _first_time(series_list: list[Any]) -> tuple[int, Any] | None:
    for series in series_list:
        for row in series.values:
            if row[1] is not None:
                return int(row[0]), row[1]
    return None


_FETCH_CHUNK_MS = 7 * 24 * 3_600_000  # one query per week of raw samples


def fetch_rows(
    client: InfluxClient, machine: MachineRef, lo_ms: int, hi_ms: int, fields: Sequence[str]
) -> tuple[list[int], list[int], list[int], list[float]]:
    """Raw samples of ``machine`` in ``[lo_ms, hi_ms)``: times, state codes, meter readings."""
    ts: list[int] = []
    codes: list[int] = []
    counter_ts: list[int] = []
    counter_values: list[float] = []
    if not fields or hi_ms <= lo_ms:
        return ts, codes, counter_ts, counter_values
    select = ", ".join(quote_ident(f) for f in fields)
    state_col = 1 + fields.index(FIELD_STATE) if FIELD_STATE in fields else None
    counter_col = (
        1 + fields.index(FIELD_RUN_SECONDS_TOTAL) if FIELD_RUN_SECONDS_TOTAL in fields else None
    )
    for start in range(lo_ms, hi_ms, _FETCH_CHUNK_MS):
        stop = min(start + _FETCH_CHUNK_MS, hi_ms)
        for series in client.query_series(
            f"SELECT {select} FROM {quote_ident(TELEMETRY)} WHERE {key_clause(machine)} "
            f"AND time >= {start}ms AND time < {stop}ms"
        ):
            _append_rows(
                series.values, state_col, counter_col, (ts, codes, counter_ts, counter_values)
            )
    return ts, codes, counter_ts, counter_values


def _as_arrays(ts: list[int], codes: list[int]) -> tuple[IntArray, Int8Array]:
    t = np.asarray(ts, dtype=np.int64)
    c = np.asarray(codes, dtype=np.int8)
    order = np.argsort(t, kind="stable")
    t, c = t[order], c[order]
    if t.size > 1 and np.any(t[1:] == t[:-1]):
        # The same instant in two series of one machine: one sample, keeping a state if any.
        unique, first = np.unique(t, return_index=True)
        c = np.maximum.reduceat(c, first).astype(np.int8)
        t = unique
    return t, c


def _counter_arrays(ts: list[int], values: list[float]) -> tuple[IntArray, IntArray]:
    """Meter readings in time order, one per instant (the last written wins a tie)."""
    t = np.asarray(ts, dtype=np.int64)
    v = to_counter_ms(values)
    order = np.argsort(t, kind="stable")
    t, v = t[order], v[order]
    if t.size > 1 and np.any(t[1:] == t[:-1]):
        last = np.append(t[1:] != t[:-1], True)
        t, v = t[last], v[last]
    return t, v


@dataclass(frozen=True)
class Bracket:
    """What lies just outside a window ``[lo, hi)`` of one machine's samples."""

    last_state_before: int | None  # time of the last sample with a state in [lo - look-back, lo)
    counter_before: tuple[int, float] | None  # (time, value) of the last meter reading before lo


def bracket(client: InfluxClient, machine: MachineRef, lo_ms: int, look_back_ms: int) -> Bracket:
    """Look up the last stated sample (within ``look_back_ms``) and meter reading before ``lo_ms``."""
    where = key_clause(machine)
    state_q = (
        f"SELECT last({quote_ident(FIELD_STATE)}) FROM {quote_ident(TELEMETRY)} WHERE {where} "
        f"AND time >= {lo_ms - look_back_ms}ms AND time < {lo_ms}ms"
    )
    counter_q = (
        f"SELECT last({quote_ident(FIELD_RUN_SECONDS_TOTAL)}) FROM {quote_ident(TELEMETRY)} "
        f"WHERE {where} AND time < {lo_ms}ms"
    )
    state_r, counter_r = client.query(f"{state_q}; {counter_q}")
    state_hit = _first_time(state_r)
    counter_hit = _first_time(counter_r)
    return Bracket(
        state_hit[0] if state_hit else None,
        (counter_hit[0], float(counter_hit[1])) if counter_hit else None,
    )


def load_samples(
    client: InfluxClient,
    machine: MachineRef,
    start_ms: int,
    end_ms: int,
    *,
    max_gap: timedelta = DEFAULT_MAX_GAP,
    carry_horizon: timedelta = CARRY_HORIZON,
    fields: Sequence[str] | None = None,
) -> Samples:
    """Everything needed to compute a machine's usage within ``[start_ms, end_ms)``.

    That is the samples inside, the chain of samples that carries a state into the
    window (back to the last sample with a state, within ``carry_horizon`` of the
    chain's last sample before the window), the first
    samples after it (they end the last interval) and the last meter reading before it.
    ``machine`` is a :class:`MachineKey` (or ``site/machine``); a bare id matches that id
    at every site (the alert rules' view).
    """
    if isinstance(machine, MachineKey) and not machine.site:
        return Samples.none()  # a bare id seen at no site: no data
    fields = telemetry_fields(client) if fields is None else fields
    # A sample up to max_gap before the start holds into the window, and its state may
    # come from a stated sample up to carry_horizon before *it*: look back that far.
    edge = bracket(client, machine, start_ms, duration_ms(carry_horizon) + duration_ms(max_gap))
    lo = start_ms if edge.last_state_before is None else edge.last_state_before
    ts, codes, counter_ts, counter_values = fetch_rows(
        client, machine, lo, end_ms + duration_ms(max_gap), fields
    )
    t, c = _as_arrays(ts, codes)
    cts, cvalues = _counter_arrays(counter_ts, counter_values)
    keep = (cts >= start_ms) & (cts < end_ms)
    previous = None
    if edge.counter_before is not None:
        previous = (edge.counter_before[0], int(to_counter_ms([edge.counter_before[1]])[0]))
    return Samples(t, c, cts[keep], cvalues[keep], previous)


def load_samples_by_id(
    client: InfluxClient,
    machines: Sequence[str],
    start_ms: int,
    end_ms: int,
    *,
    max_gap: timedelta = DEFAULT_MAX_GAP,
    carry_horizon: timedelta = CARRY_HORIZON,
    fields: Sequence[str] | None = None,
) -> dict[str, Samples]:
    """``load_samples`` of many bare machine ids (the alert rules' view: an id at every
    site) in a handful of queries instead of three per machine; the same ``Samples`` each.

    The brackets come from two grouped queries; the rows of machines whose state chain
    starts within ``2 × max_gap`` of the window (the common case) from one grouped query;
    a machine whose chain reaches further back (states only on change) is read on its own.
    """
    names = sorted(set(machines))
    if not names or end_ms <= start_ms:
        return {name: Samples.none() for name in names}
    fields = telemetry_fields(client) if fields is None else fields
    gap_ms = duration_ms(max_gap)
    look_back = duration_ms(carry_horizon) + gap_ms
    only = _ids_clause(names)
    state_q = (
        f"SELECT last({quote_ident(FIELD_STATE)}) FROM {quote_ident(TELEMETRY)} WHERE {only} "
        f"AND time >= {start_ms - look_back}ms AND time < {start_ms}ms "
        f"GROUP BY {quote_ident(TAG_MACHINE)}"
    )
    counter_q = (
        f"SELECT last({quote_ident(FIELD_RUN_SECONDS_TOTAL)}) FROM {quote_ident(TELEMETRY)} "
        f"WHERE {only} AND time < {start_ms}ms GROUP BY {quote_ident(TAG_MACHINE)}"
    )
    state_r, counter_r = client.query(f"{state_q}; {counter_q}")
    last_state = {s.tags[TAG_MACHINE]: _first_time([s]) for s in state_r}
    last_counter = {s.tags[TAG_MACHINE]: _first_time([s]) for s in counter_r}
    los = {}
    for name in names:
        hit = last_state.get(name)
        los[name] = start_ms if hit is None else hit[0]
    fresh = [n for n in names if los[n] >= start_ms - 2 * gap_ms]
    rows: dict[str, tuple[list[int], list[int], list[int], list[float]]] = {}
    if fresh:
        rows = _fetch_rows_by_id(client, fresh, min(los[n] for n in fresh), end_ms + gap_ms, fields)
    out: dict[str, Samples] = {}
    for name in names:
        if name in rows or name in fresh:
            ts, codes, counter_ts, counter_values = rows.get(name, ([], [], [], []))
            keep_from = los[name]
            pairs = [(t, c) for t, c in zip(ts, codes, strict=True) if t >= keep_from]
            ts, codes = [t for t, _ in pairs], [c for _, c in pairs]
        else:
            ts, codes, counter_ts, counter_values = fetch_rows(
                client, name, los[name], end_ms + gap_ms, fields
            )
        t, c = _as_arrays(ts, codes)
        cts, cvalues = _counter_arrays(counter_ts, counter_values)
        keep = (cts >= start_ms) & (cts < end_ms)
        previous = None
        counter_hit = last_counter.get(name)
        if counter_hit is not None:
            previous = (counter_hit[0], int(to_counter_ms([float(counter_hit[1])])[0]))
        out[name] = Samples(t, c, cts[keep], cvalues[keep], previous)
    return out


def _ids_clause(names: Sequence[str]) -> str:
    """``"machine" =~ /^(a|b)$/`` for bare ids (they match ``[A-Za-z0-9_.-]``)."""
    alternatives = "|".join(re.escape(name).replace("/", r"\/") for name in names)
    return f"{quote_ident(TAG_MACHINE)} =~ /^({alternatives})$/"


def _fetch_rows_by_id(
    client: InfluxClient, names: Sequence[str], lo_ms: int, hi_ms: int, fields: Sequence[str]
) -> dict[str, tuple[list[int], list[int], list[int], list[float]]]:
    """``fetch_rows`` of several bare ids at once (one grouped query per chunk)."""
    out: dict[str, tuple[list[int], list[int], list[int], list[float]]] = {}
    if not fields or hi_ms <= lo_ms:
        return out
    select = ", ".join(quote_ident(f) for f in fields)
    state_col = 1 + fields.index(FIELD_STATE) if FIELD_STATE in fields else None
    counter_col = (
        1 + fields.index(FIELD_RUN_SECONDS_TOTAL) if FIELD_RUN_SECONDS_TOTAL in fields else None
    )
    only = _ids_clause(names)
    for start in range(lo_ms, hi_ms, _FETCH_CHUNK_MS):
        stop = min(start + _FETCH_CHUNK_MS, hi_ms)
        for series in client.query_series(
            f"SELECT {select} FROM {quote_ident(TELEMETRY)} WHERE {only} "
            f"AND time >= {start}ms AND time < {stop}ms GROUP BY {quote_ident(TAG_MACHINE)}"
        ):
            ts, codes, counter_ts, counter_values = out.setdefault(
                series.tags[TAG_MACHINE], ([], [], [], [])
            )
            _append_rows(
                series.values, state_col, counter_col, (ts, codes, counter_ts, counter_values)
            )
    return out


def series_from_samples(
    key: MachineKey,
    samples: Samples,
    edges_ms: Sequence[int] | IntArray,
    *,
    max_gap: timedelta = DEFAULT_MAX_GAP,
    carry_horizon: timedelta = CARRY_HORIZON,
    rules: CounterRules = CounterRules(),
) -> UsageSeries:
    """Pure: a machine's usage per bucket from its samples."""
    edges = np.asarray(edges_ms, dtype=np.int64)
    gap_ms, horizon_ms = duration_ms(max_gap), duration_ms(carry_horizon)
    state_ms, known_ms = state_ms_by_bucket(samples.ts_ms, samples.codes, edges, gap_ms, horizon_ms)
    counter = counter_by_bucket(
        samples.counter_ts_ms, samples.counter_ms, samples.counter_previous, edges, rules
    )
    gaps = gaps_by_bucket(samples.ts_ms, samples.codes, edges, gap_ms, horizon_ms)
    return UsageSeries(
        key,
        edges,
        state_ms,
        known_ms,
        counter.billed_ms,
        counter.defined,
        counter.counts,
        counter.events,
        *gaps,
    )


def raw_usage_series(
    client: InfluxClient,
    machines: Iterable[Ref],
    edges_ms: Sequence[int] | IntArray,
    *,
    max_gap: timedelta = DEFAULT_MAX_GAP,
    carry_horizon: timedelta = CARRY_HORIZON,
    rules: CounterRules = CounterRules(),
    workers: int = 4,
) -> dict[Ref, UsageSeries]:
    """Usage per bucket for each machine, computed from raw samples (the ``--from-raw`` path).

    ``machines`` are keys or names (``site/machine``, or a bare id that exists at one
    site); the result is keyed by them as given.
    """
    edges = np.asarray(edges_ms, dtype=np.int64)
    keys = resolve_machines(client, machines)
    fields = telemetry_fields(client)

    def one(key: MachineKey) -> UsageSeries:
        samples = load_samples(
            client,
            key,
            int(edges[0]),
            int(edges[-1]),
            max_gap=max_gap,
            carry_horizon=carry_horizon,
            fields=fields,
        )
        return series_from_samples(
            key, samples, edges, max_gap=max_gap, carry_horizon=carry_horizon, rules=rules
        )

    unique = sorted(set(keys.values()))
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        found = dict(zip(unique, pool.map(one, unique), strict=True))
    return {ref: found[key] for ref, key in keys.items()}


def machine_usage(
    client: InfluxClient,
    machine: MachineRef,
    start: datetime,
    end: datetime,
    *,
    max_gap: timedelta = DEFAULT_MAX_GAP,
) -> Usage:
    """How a machine spent ``[start, end)``, computed from its raw samples.

    ``machine`` is a :class:`MachineKey` or ``site/machine``. A bare id counts that id at
    every site: that is how the alert rules (which name machines by id) see a machine;
    usage and billing resolve bare ids with :func:`resolve_machines` instead.
    """
    if end <= start:
        raise ValueError(f"end {end.isoformat()} is not after start {start.isoformat()}")
    lo, hi = to_ms(start), to_ms(end)
    site, machine_id = machine if isinstance(machine, MachineKey) else parse_machine(machine)
    samples = load_samples(client, machine, lo, hi, max_gap=max_gap)
    series = series_from_samples(
        MachineKey(site or "", machine_id), samples, [lo, hi], max_gap=max_gap
    )
    # Keep the caller's datetimes (and zone) rather than the UTC round trip.
    return replace(series.usage(0), start=start, end=end)


def _append_rows(
    rows: list[list[Any]],
    state_col: int | None,
    counter_col: int | None,
    into: tuple[list[int], list[int], list[int], list[float]],
) -> None:
    """Append query rows (time first) to one machine's columns: times, state codes, and
    the counter's readings where the row has one."""
    ts, codes, counter_ts, counter_values = into
    ts.extend(row[0] for row in rows)
    if state_col is None:
        codes.extend([NO_STATE] * len(rows))
    else:
        code_of = STATE_CODE.get
        codes.extend(code_of(row[state_col], NO_STATE) for row in rows)
    if counter_col is not None:
        for row in rows:
            if row[counter_col] is not None:
                counter_ts.append(row[0])
                counter_values.append(row[counter_col])
