"""Usage of machines: seconds per state, known time and hour-meter time over any interval.

The maths are pure functions over numpy arrays in integer milliseconds (exact sums, so
hourly rollups add up to exactly what a direct computation gives); the I/O helpers that
read raw ``telemetry`` samples from InfluxDB are at the bottom.

Semantics (DESIGN.md "Semantics that billing depends on", docs/billing.md):

- A sample's state holds from its ``ts`` until the next sample of the machine, but never
  longer than ``max_gap`` (default 5 min); time past that is *unknown* and never billed.
- A value-only sample (no ``state``) is a heartbeat: it continues the state in effect just
  before it, provided the previous sample is within ``max_gap`` (otherwise its state is
  unknown until the next sample that carries one) and the chain of heartbeats goes back
  to a sample with a state at most ``carry_horizon`` (default 24 h) earlier.
- The state at an interval's start comes from the last sample before it (if within
  ``max_gap``). Intervals are cut exactly at their edges.
- Coverage = known seconds / interval seconds.

>>> usage = machine_usage(client, "cnc-01", start, end)  # doctest: +SKIP
>>> usage.state_seconds["running"], usage.coverage       # doctest: +SKIP
(27000.0, 1.0)
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import numpy as np
import numpy.typing as npt

from analytics.counters import (
    BoolArray,
    CounterTolerance,
    IntArray,
    counter_mismatch,
    counter_ms_by_bucket,
    to_counter_ms,
)
from analytics.periods import as_datetime, to_ms
from contract import STATES
from store import InfluxClient, quote_ident, quote_string
from store.schema import FIELD_RUN_SECONDS_TOTAL, FIELD_STATE, TAG_MACHINE, TELEMETRY

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


# -- results --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Usage:
    """How one machine spent ``[start, end)``: seconds per state, known time, hour meter.

    ``known_seconds`` is the time with a known state (the sum of ``state_seconds``);
    ``counter_seconds`` is the hour-meter (``run_seconds_total``) delta, None when the
    machine sent no meter reading in the interval; ``counter_reset`` says the meter was
    reset (went backwards) in it.
    """

    machine: str
    start: datetime
    end: datetime
    state_seconds: dict[str, float]
    known_seconds: float
    counter_seconds: float | None
    counter_reset: bool

    @property
    def coverage(self) -> float:
        """Known seconds / interval seconds, 0..1."""
        # Timestamps, not end - start: same-zone datetimes subtract as wall-clock times.
        total = self.end.timestamp() - self.start.timestamp()
        return self.known_seconds / total if total > 0 else 0.0

    @property
    def running_seconds(self) -> float:
        return self.state_seconds.get("running", 0.0)

    def counter_mismatch(self, tolerance: CounterTolerance | None = None) -> bool:
        """True when the hour meter disagrees with the running time beyond ``tolerance``."""
        return counter_mismatch(
            self.counter_seconds, self.running_seconds, tolerance or CounterTolerance()
        )


@dataclass(frozen=True)
class UsageSeries:
    """One machine's exact usage per bucket, in integer milliseconds (what billing sums).

    ``edges_ms`` has one more entry than there are buckets; ``state_ms`` columns follow
    ``contract.STATES``.
    """

    machine: str
    edges_ms: IntArray
    state_ms: IntArray
    known_ms: IntArray
    counter_ms: IntArray
    counter_defined: BoolArray
    counter_reset: BoolArray

    def __len__(self) -> int:
        return int(self.known_ms.size)

    @classmethod
    def empty(cls, machine: str, edges_ms: Sequence[int] | IntArray) -> UsageSeries:
        edges = np.asarray(edges_ms, dtype=np.int64)
        n = max(edges.size - 1, 0)
        return cls(
            machine,
            edges,
            np.zeros((n, N_STATES), np.int64),
            np.zeros(n, np.int64),
            np.zeros(n, np.int64),
            np.zeros(n, np.bool_),
            np.zeros(n, np.bool_),
        )

    def state_total_ms(self, states: Iterable[str]) -> IntArray:
        """Milliseconds per bucket in any of ``states``."""
        columns = sorted({STATE_CODE[s] for s in states})
        return self.state_ms[:, columns].sum(axis=1) if columns else self.known_ms * 0

    def usage(self, k: int) -> Usage:
        """Bucket ``k`` as a :class:`Usage`."""
        return Usage(
            machine=self.machine,
            start=as_datetime(int(self.edges_ms[k])),
            end=as_datetime(int(self.edges_ms[k + 1])),
            state_seconds={
                state: int(self.state_ms[k, code]) / 1000 for state, code in STATE_CODE.items()
            },
            known_seconds=int(self.known_ms[k]) / 1000,
            counter_seconds=int(self.counter_ms[k]) / 1000 if self.counter_defined[k] else None,
            counter_reset=bool(self.counter_reset[k]),
        )

    def usages(self) -> list[Usage]:
        return [self.usage(k) for k in range(len(self))]


# -- raw samples from InfluxDB --------------------------------------------------------------


@dataclass(frozen=True)
class Samples:
    """One machine's raw samples in a window, as arrays (sorted, unique times).

    ``counter_previous_ms`` is the last meter reading before ``counter_from_ms``; the
    counter arrays hold the readings at or after it.
    """

    ts_ms: IntArray
    codes: Int8Array
    counter_ts_ms: IntArray
    counter_ms: IntArray
    counter_previous_ms: int | None


def _machine_clause(machine: str) -> str:
    return f"{quote_ident(TAG_MACHINE)} = {quote_string(machine)}"


def telemetry_fields(client: InfluxClient) -> list[str]:
    """Every field name of ``telemetry`` (a value-only sample has only some of them)."""
    series = client.query_series(f"SHOW FIELD KEYS FROM {quote_ident(TELEMETRY)}")
    return sorted({row[0] for s in series for row in s.values})


def telemetry_machines(client: InfluxClient) -> list[str]:
    """Every machine id that has telemetry, sorted."""
    series = client.query_series(
        f"SHOW TAG VALUES FROM {quote_ident(TELEMETRY)} WITH KEY = {quote_ident(TAG_MACHINE)}"
    )
    return sorted({row[1] for s in series for row in s.values})


def _first_time(series_list: list[Any]) -> tuple[int, Any] | None:
    for series in series_list:
        for row in series.values:
            if row[1] is not None:
                return int(row[0]), row[1]
    return None


_FETCH_CHUNK_MS = 7 * 24 * 3_600_000  # one query per week of raw samples


def fetch_rows(
    client: InfluxClient, machine: str, lo_ms: int, hi_ms: int, fields: Sequence[str]
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
    code_of = STATE_CODE.get
    for start in range(lo_ms, hi_ms, _FETCH_CHUNK_MS):
        stop = min(start + _FETCH_CHUNK_MS, hi_ms)
        for series in client.query_series(
            f"SELECT {select} FROM {quote_ident(TELEMETRY)} WHERE {_machine_clause(machine)} "
            f"AND time >= {start}ms AND time < {stop}ms"
        ):
            rows = series.values
            ts.extend(row[0] for row in rows)
            if state_col is None:
                codes.extend([NO_STATE] * len(rows))
            else:
                codes.extend(code_of(row[state_col], NO_STATE) for row in rows)
            if counter_col is not None:
                for row in rows:
                    if row[counter_col] is not None:
                        counter_ts.append(row[0])
                        counter_values.append(row[counter_col])
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


@dataclass(frozen=True)
class Bracket:
    """What lies just outside a window ``[lo, hi)`` of one machine's samples."""

    last_state_before: int | None  # time of the last sample with a state in [lo - look-back, lo)
    counter_before: float | None  # last meter reading before lo


def bracket(client: InfluxClient, machine: str, lo_ms: int, look_back_ms: int) -> Bracket:
    """Look up the last stated sample (within ``look_back_ms``) and meter reading before ``lo_ms``."""
    where = _machine_clause(machine)
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
        float(counter_hit[1]) if counter_hit else None,
    )


def load_samples(
    client: InfluxClient,
    machine: str,
    start_ms: int,
    end_ms: int,
    *,
    max_gap: timedelta = DEFAULT_MAX_GAP,
    carry_horizon: timedelta = CARRY_HORIZON,
    fields: Sequence[str] | None = None,
) -> Samples:
    """Everything needed to compute ``machine``'s usage within ``[start_ms, end_ms)``.

    That is the samples inside, the chain of samples that carries a state into the
    window (back to the last sample with a state, within ``carry_horizon`` of the
    chain's last sample before the window), the first
    samples after it (they end the last interval) and the last meter reading before it.
    """
    fields = telemetry_fields(client) if fields is None else fields
    # A sample up to max_gap before the start holds into the window, and its state may
    # come from a stated sample up to carry_horizon before *it*: look back that far.
    edge = bracket(client, machine, start_ms, duration_ms(carry_horizon) + duration_ms(max_gap))
    lo = start_ms if edge.last_state_before is None else edge.last_state_before
    ts, codes, counter_ts, counter_values = fetch_rows(
        client, machine, lo, end_ms + duration_ms(max_gap), fields
    )
    t, c = _as_arrays(ts, codes)
    cts = np.asarray(counter_ts, dtype=np.int64)
    cvalues = to_counter_ms(counter_values)
    keep = (cts >= start_ms) & (cts < end_ms)
    order = np.argsort(cts[keep], kind="stable")
    previous = None if edge.counter_before is None else int(to_counter_ms([edge.counter_before])[0])
    return Samples(t, c, cts[keep][order], cvalues[keep][order], previous)


def series_from_samples(
    machine: str,
    samples: Samples,
    edges_ms: Sequence[int] | IntArray,
    *,
    max_gap: timedelta = DEFAULT_MAX_GAP,
    carry_horizon: timedelta = CARRY_HORIZON,
) -> UsageSeries:
    """Pure: a machine's usage per bucket from its samples."""
    edges = np.asarray(edges_ms, dtype=np.int64)
    state_ms, known_ms = state_ms_by_bucket(
        samples.ts_ms, samples.codes, edges, duration_ms(max_gap), duration_ms(carry_horizon)
    )
    counter_ms, counter_reset, defined = counter_ms_by_bucket(
        samples.counter_ts_ms, samples.counter_ms, samples.counter_previous_ms, edges
    )
    return UsageSeries(machine, edges, state_ms, known_ms, counter_ms, defined, counter_reset)


def raw_usage_series(
    client: InfluxClient,
    machines: Iterable[str],
    edges_ms: Sequence[int] | IntArray,
    *,
    max_gap: timedelta = DEFAULT_MAX_GAP,
    carry_horizon: timedelta = CARRY_HORIZON,
    workers: int = 4,
) -> dict[str, UsageSeries]:
    """Usage per bucket for each machine, computed from raw samples (the ``--from-raw`` path)."""
    edges = np.asarray(edges_ms, dtype=np.int64)
    fields = telemetry_fields(client)

    def one(machine: str) -> UsageSeries:
        samples = load_samples(
            client,
            machine,
            int(edges[0]),
            int(edges[-1]),
            max_gap=max_gap,
            carry_horizon=carry_horizon,
            fields=fields,
        )
        return series_from_samples(
            machine, samples, edges, max_gap=max_gap, carry_horizon=carry_horizon
        )

    names = sorted(set(machines))
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        return dict(zip(names, pool.map(one, names), strict=True))


def machine_usage(
    client: InfluxClient,
    machine: str,
    start: datetime,
    end: datetime,
    *,
    max_gap: timedelta = DEFAULT_MAX_GAP,
) -> Usage:
    """How ``machine`` spent ``[start, end)``, computed from its raw samples."""
    if end <= start:
        raise ValueError(f"end {end.isoformat()} is not after start {start.isoformat()}")
    edges = [to_ms(start), to_ms(end)]
    found = raw_usage_series(client, [machine], edges, max_gap=max_gap, workers=1)
    usage = found[machine].usage(0)
    # Keep the caller's datetimes (and zone) rather than the UTC round trip.
    return Usage(
        machine,
        start,
        end,
        usage.state_seconds,
        usage.known_seconds,
        usage.counter_seconds,
        usage.counter_reset,
    )
