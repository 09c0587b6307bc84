"""Hourly usage rollups in InfluxDB (``usage_hourly``), kept current from the ingest's log.

One point per machine and UTC hour: seconds per state (``running_s``, ``idle_s``, …),
``known_s``, and when the machine sent hour-meter readings in that hour ``counter_s``
(the meter's delta) and ``counter_resets``. Billing reads these, so a month for a plant
is a few thousand rows instead of millions of samples.

The ingest logs every machine-hour it wrote to (``ingest_touched``).
:func:`refresh_rollups` recomputes exactly those hours since its last call, plus the
hours after them that a sample can still change: its state holds up to ``max_gap`` into
the next hour, a stated sample changes the heartbeats after it, and a meter reading
changes the delta of the next reading. :func:`rebuild_rollups` recomputes a range.

>>> refresh_rollups(client, state_file=Path("var/analytics/rollups.json"))  # doctest: +SKIP
48
"""

from __future__ import annotations

import fcntl
import json
import os
import tempfile
import time
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, tzinfo
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from analytics.counters import IntArray, to_counter_ms
from analytics.periods import HOUR_MS, BucketSize, bucket_edges, on_utc_hours, to_ms
from analytics.usage import (
    CARRY_HORIZON,
    DEFAULT_MAX_GAP,
    N_STATES,
    Usage,
    UsageSeries,
    duration_ms,
    load_samples,
    raw_usage_series,
    series_from_samples,
    telemetry_fields,
    telemetry_machines,
)
from contract import STATES
from store import InfluxClient, Point, quote_ident, quote_string
from store.lineprotocol import FieldValue
from store.schema import (
    FIELD_COUNTER_RESETS,
    FIELD_COUNTER_S,
    FIELD_HOUR,
    FIELD_KNOWN_S,
    FIELD_RUN_SECONDS_TOTAL,
    FIELD_STATE,
    INGEST_TOUCHED,
    TAG_LINE,
    TAG_MACHINE,
    TAG_SITE,
    TELEMETRY,
    USAGE_HOURLY,
    state_seconds_field,
)

STATE_FIELDS = [state_seconds_field(state) for state in STATES]

# Markers are re-read from this long before the watermark: a write whose marker was stamped
# before the newest one seen but landed later (another worker, a retried write) is still
# seen. Cheap: the hours touched recently are the ones recomputed every cycle anyway.
DEFAULT_OVERLAP = timedelta(minutes=5)
STATE_FILE_NAME = "rollups.json"
_REBUILD_CHUNK_HOURS = 24 * 7  # recompute a week of hours per query window


def default_state_file(data_dir: Path) -> Path:
    """Where the refresh watermark lives under a data directory."""
    return data_dir / "analytics" / STATE_FILE_NAME


def _floor_hour(ms: int) -> int:
    return ms - ms % HOUR_MS


def _ceil_hour(ms: int) -> int:
    return -(-ms // HOUR_MS) * HOUR_MS


def _where_machines(machines: Sequence[str]) -> str:
    return (
        "(" + " OR ".join(f"{quote_ident(TAG_MACHINE)} = {quote_string(m)}" for m in machines) + ")"
    )


# -- writing --------------------------------------------------------------------------------


def rollup_points(series: UsageSeries, tags: dict[str, str]) -> list[Point]:
    """Pure: one ``usage_hourly`` point per hour bucket of ``series`` (edges on UTC hours)."""
    points = []
    for k in range(len(series)):
        fields: dict[str, FieldValue] = {
            name: int(series.state_ms[k, code]) / 1000
            for name, code in zip(STATE_FIELDS, range(N_STATES), strict=True)
        }
        fields[FIELD_KNOWN_S] = int(series.known_ms[k]) / 1000
        if series.counter_defined[k]:
            fields[FIELD_COUNTER_S] = int(series.counter_ms[k]) / 1000
            fields[FIELD_COUNTER_RESETS] = 1.0 if series.counter_reset[k] else 0.0
        points.append(Point(USAGE_HOURLY, tags, fields, int(series.edges_ms[k])))
    return points


def machine_tags(client: InfluxClient, machines: Sequence[str]) -> dict[str, dict[str, str]]:
    """The site and line tags each machine's telemetry carries (first in sort order)."""
    if not machines:
        return {}
    statements = [
        f"SHOW TAG VALUES FROM {quote_ident(TELEMETRY)} WITH KEY IN "
        f"({quote_ident(TAG_SITE)}, {quote_ident(TAG_LINE)}) "
        f"WHERE {quote_ident(TAG_MACHINE)} = {quote_string(m)}"
        for m in machines
    ]
    out: dict[str, dict[str, str]] = {}
    for machine, result in zip(machines, client.query("; ".join(statements)), strict=True):
        values: dict[str, list[str]] = {}
        for series in result:
            for key, value in series.values:
                values.setdefault(key, []).append(value)
        tags = {TAG_MACHINE: machine}
        for key in (TAG_SITE, TAG_LINE):
            if values.get(key):
                tags[key] = sorted(values[key])[0]
        out[machine] = tags
    return out


def retagged_machines(client: InfluxClient, tags: dict[str, dict[str, str]]) -> set[str]:
    """Machines whose ``usage_hourly`` also holds series under other site/line tags.

    A machine that moved to a line that sorts first gets its rollups written under new
    tags; the old points of the hours recomputed then must go, or a reader that groups
    by machine would count those hours twice.
    """
    machines = sorted(tags)
    if not machines:
        return set()
    statements = [
        f"SHOW TAG VALUES FROM {quote_ident(USAGE_HOURLY)} WITH KEY IN "
        f"({quote_ident(TAG_SITE)}, {quote_ident(TAG_LINE)}) "
        f"WHERE {quote_ident(TAG_MACHINE)} = {quote_string(m)}"
        for m in machines
    ]
    out = set()
    for machine, result in zip(machines, client.query("; ".join(statements)), strict=True):
        current = tags[machine]
        for series in result:
            if any(current.get(key) != value for key, value in series.values):
                out.add(machine)
    return out


def _delete_other_tags(
    client: InfluxClient, machine: str, tags: dict[str, str], lo: int, hi: int
) -> None:
    """Delete ``machine``'s rollup points in ``[lo, hi)`` that carry other site/line tags."""
    other = " OR ".join(
        f"{quote_ident(key)} != {quote_string(tags[key])}"
        for key in (TAG_SITE, TAG_LINE)
        if key in tags
    )
    if other:
        client.query(
            f"DELETE FROM {quote_ident(USAGE_HOURLY)} WHERE "
            f"{quote_ident(TAG_MACHINE)} = {quote_string(machine)} AND ({other}) "
            f"AND time >= {lo}ms AND time < {hi}ms",
            epoch=None,
        )


def _compute_and_write(
    client: InfluxClient,
    machine: str,
    tags: dict[str, str],
    first_hour: int,
    end_hour: int,
    fields: Sequence[str],
    max_gap: timedelta,
    carry_horizon: timedelta,
    retagged: bool = False,
) -> int:
    hours = 0
    for lo in range(first_hour, end_hour, _REBUILD_CHUNK_HOURS * HOUR_MS):
        hi = min(lo + _REBUILD_CHUNK_HOURS * HOUR_MS, end_hour)
        samples = load_samples(
            client, machine, lo, hi, max_gap=max_gap, carry_horizon=carry_horizon, fields=fields
        )
        edges = np.arange(lo, hi + 1, HOUR_MS, dtype=np.int64)
        series = series_from_samples(
            machine, samples, edges, max_gap=max_gap, carry_horizon=carry_horizon
        )
        client.write(rollup_points(series, tags))
        if retagged:  # written first: the hours are never missing, only briefly doubled
            _delete_other_tags(client, machine, tags, lo, hi)
        hours += len(series)
    return hours


def rebuild_rollups(
    client: InfluxClient,
    start: datetime,
    end: datetime,
    machines: Iterable[str] | None = None,
    *,
    max_gap: timedelta = DEFAULT_MAX_GAP,
    carry_horizon: timedelta = CARRY_HORIZON,
    workers: int = 4,
) -> int:
    """Recompute ``usage_hourly`` for every UTC hour overlapping ``[start, end)``.

    ``machines`` defaults to every machine with telemetry. Returns the machine-hours
    written. Use it to backfill, after changing ``max_gap``, or when data was written
    without the ingest (which logs what it touched for :func:`refresh_rollups`).
    """
    names = sorted(set(machines)) if machines is not None else telemetry_machines(client)
    if not names:
        return 0
    first_hour, end_hour = _floor_hour(to_ms(start)), _ceil_hour(to_ms(end))
    fields = telemetry_fields(client)
    tags = machine_tags(client, names)
    retagged = retagged_machines(client, tags)

    def one(machine: str) -> int:
        return _compute_and_write(
            client,
            machine,
            tags[machine],
            first_hour,
            end_hour,
            fields,
            max_gap,
            carry_horizon,
            machine in retagged,
        )

    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        return sum(pool.map(one, names))


# -- incremental refresh --------------------------------------------------------------------


def _runs(hours: Iterable[int]) -> list[tuple[int, int]]:
    """Consecutive hours merged into ``[first, end)`` ranges (epoch ms)."""
    runs: list[tuple[int, int]] = []
    for hour in sorted(set(hours)):
        if runs and runs[-1][1] == hour:
            runs[-1] = (runs[-1][0], hour + HOUR_MS)
        else:
            runs.append((hour, hour + HOUR_MS))
    return runs


def _first(result: list[Any]) -> int | None:
    for series in result:
        for row in series.values:
            return int(row[0])
    return None


def affected_end(
    client: InfluxClient,
    machine: str,
    end_ms: int,
    max_gap: timedelta,
    carry_horizon: timedelta,
) -> int:
    """The end of what samples before ``end_ms`` can change in the hours after it.

    The last sample's state holds up to ``max_gap`` past it; heartbeats after it carry
    its state until the next stated sample (or the chain breaks); the next meter reading
    after it reports a delta relative to it.
    """
    where = f"{quote_ident(TAG_MACHINE)} = {quote_string(machine)}"
    gap_end, horizon_end = end_ms + duration_ms(max_gap), end_ms + duration_ms(carry_horizon)
    telemetry = quote_ident(TELEMETRY)
    results = client.query(
        f"SELECT * FROM {telemetry} WHERE {where} AND time >= {end_ms}ms "
        f"AND time < {gap_end}ms ORDER BY time ASC LIMIT 1; "
        f"SELECT first({quote_ident(FIELD_STATE)}) FROM {telemetry} WHERE {where} "
        f"AND time >= {end_ms}ms AND time < {horizon_end}ms; "
        f"SELECT * FROM {telemetry} WHERE {where} AND time >= {end_ms}ms "
        f"AND time < {horizon_end}ms ORDER BY time DESC LIMIT 1; "
        f"SELECT first({quote_ident(FIELD_RUN_SECONDS_TOTAL)}) FROM {telemetry} "
        f"WHERE {where} AND time >= {end_ms}ms"
    )
    next_sample, next_state, last_sample, next_counter = results
    until = gap_end
    if _is_heartbeat(next_sample):
        # A heartbeat right after the window continues its last state: everything up to
        # the next stated sample (or the end of the heartbeat chain) may change.
        state_at = _first(next_state)
        last_at = _first(last_sample)
        if state_at is not None:
            until = max(until, state_at)
        elif last_at is not None:
            until = max(until, min(last_at + duration_ms(max_gap), horizon_end))
    counter_at = _first(next_counter)
    if counter_at is not None:
        until = max(until, counter_at + 1)
    return until


def _is_heartbeat(result: list[Any]) -> bool:
    """Whether the single row of ``SELECT * … LIMIT 1`` is a sample without a state."""
    for series in result:
        if series.values and FIELD_STATE in series.columns:
            return series.values[0][series.columns.index(FIELD_STATE)] is None
        if series.values:
            return True
    return False


def recompute_hours(
    client: InfluxClient,
    touched: dict[str, set[int]],
    *,
    max_gap: timedelta = DEFAULT_MAX_GAP,
    carry_horizon: timedelta = CARRY_HORIZON,
    workers: int = 4,
) -> int:
    """Recompute the given machine-hours (epoch ms of UTC hour starts) and what they affect."""
    names = sorted(m for m, hours in touched.items() if hours)
    if not names:
        return 0
    fields = telemetry_fields(client)
    tags = machine_tags(client, names)
    retagged = retagged_machines(client, tags)

    def one(machine: str) -> int:
        ranges: list[tuple[int, int]] = []
        for first, end in _runs(touched[machine]):
            stop = _ceil_hour(affected_end(client, machine, end, max_gap, carry_horizon))
            if ranges and first <= ranges[-1][1]:
                ranges[-1] = (ranges[-1][0], max(ranges[-1][1], stop))
            else:
                ranges.append((first, stop))
        return sum(
            _compute_and_write(
                client,
                machine,
                tags[machine],
                a,
                b,
                fields,
                max_gap,
                carry_horizon,
                machine in retagged,
            )
            for a, b in ranges
        )

    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        return sum(pool.map(one, names))


@dataclass(frozen=True)
class RefreshState:
    """The refresh watermark: write time (ns) of the newest ``ingest_touched`` marker seen."""

    watermark_ns: int

    @classmethod
    def read(cls, path: Path) -> RefreshState | None:
        try:
            data = json.loads(path.read_text())
            return cls(int(data["watermark_ns"]))
        except FileNotFoundError:
            return None
        except (ValueError, KeyError, TypeError) as exc:
            raise ValueError(
                f"{path}: unreadable rollup watermark ({exc}); delete it to re-read the whole "
                "ingest log, or run rebuild_rollups for the range you need"
            ) from None

    def write(self, path: Path) -> None:
        """Replace ``path`` atomically; a temp file of its own, as several processes refresh."""
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
        try:
            with os.fdopen(fd, "w") as fh:
                fh.write(json.dumps({"version": 1, "watermark_ns": self.watermark_ns}) + "\n")
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise


def touched_since(client: InfluxClient, after_ns: int | None) -> tuple[dict[str, set[int]], int]:
    """Machine-hours the ingest logged after ``after_ns`` and the newest marker time (ns)."""
    clause = f" WHERE time > {after_ns}" if after_ns is not None else ""
    series = client.query_series(
        f"SELECT {quote_ident(FIELD_HOUR)} FROM {quote_ident(INGEST_TOUCHED)}{clause} "
        f"GROUP BY {quote_ident(TAG_MACHINE)}",
        epoch="ns",
    )
    touched: dict[str, set[int]] = {}
    newest = after_ns if after_ns is not None else 0
    for s in series:
        hours = touched.setdefault(s.tags.get(TAG_MACHINE, ""), set())
        for ts_ns, hour in s.values:
            if hour is not None:
                hours.add(_floor_hour(int(hour)))
            newest = max(newest, int(ts_ns))
    return touched, newest


def refresh_rollups(
    client: InfluxClient,
    *,
    since: datetime | None = None,
    state_file: Path,
    max_gap: timedelta = DEFAULT_MAX_GAP,
    carry_horizon: timedelta = CARRY_HORIZON,
    overlap: timedelta = DEFAULT_OVERLAP,
) -> int:
    """Recompute usage_hourly for the machine-hours the ingest touched since the last call.

    The watermark (newest marker write time seen) is kept in ``state_file``; each call
    re-reads markers from ``overlap`` before it, so markers of writes that were still in
    flight at the last call are not missed (recomputing an hour twice is harmless).
    ``since`` reads markers written after that instant instead. Without a state file,
    the whole log is read. Returns the machine-hours recomputed.
    """
    with _refresh_lock(state_file):
        state = RefreshState.read(state_file)
        if since is not None:
            after: int | None = to_ms(since) * 1_000_000
        elif state is not None:
            after = state.watermark_ns - duration_ms(overlap) * 1_000_000
        else:
            after = None
        touched, newest = touched_since(client, after)
        hours = recompute_hours(client, touched, max_gap=max_gap, carry_horizon=carry_horizon)
        # Never past our own clock: an ingest host whose clock runs ahead would otherwise
        # push the watermark beyond the markers other hosts are still writing.
        newest = min(newest, time.time_ns())
        previous = state.watermark_ns if state is not None else 0
        if newest > previous or state is None:
            RefreshState(max(newest, previous)).write(state_file)
    return hours


@contextmanager
def _refresh_lock(state_file: Path) -> Iterator[None]:
    """One refresh at a time per watermark file (the analytics service, `runhours usage`
    and `billing export` share it): a refresh that read raw data before late data landed
    must not write its stale hours after a newer refresh wrote the right ones."""
    state_file.parent.mkdir(parents=True, exist_ok=True)
    with open(state_file.with_name(state_file.name + ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


# -- reading --------------------------------------------------------------------------------


def series_from_rollup_rows(
    machine: str, columns: Sequence[str], rows: Sequence[Sequence[Any]], edges: IntArray
) -> UsageSeries:
    """Pure: sum ``usage_hourly`` rows (time first, then fields by ``columns``) into buckets."""
    n = edges.size - 1
    col = {name: i for i, name in enumerate(columns)}
    ts = np.asarray([r[0] for r in rows], dtype=np.int64)
    slot = np.searchsorted(edges, ts, side="right") - 1
    ok = (slot >= 0) & (slot < n)
    where = slot[ok]

    def present(name: str) -> list[Any]:
        i = col.get(name)
        return [None] * len(rows) if i is None else [r[i] for r in rows]

    def summed_ms(name: str) -> IntArray:
        values = to_counter_ms([0.0 if v is None else v for v in present(name)])
        out = np.zeros(n, np.int64)
        np.add.at(out, where, values[ok])
        return out

    def any_true(flags: list[bool]) -> npt.NDArray[np.bool_]:
        out = np.zeros(n, np.bool_)
        np.logical_or.at(out, where, np.asarray(flags, np.bool_)[ok])
        return out

    state_ms = np.stack([summed_ms(field) for field in STATE_FIELDS], axis=1)
    return UsageSeries(
        machine,
        edges,
        state_ms.reshape(n, N_STATES),
        summed_ms(FIELD_KNOWN_S),
        summed_ms(FIELD_COUNTER_S),
        any_true([v is not None for v in present(FIELD_COUNTER_S)]),
        any_true([bool(v) for v in present(FIELD_COUNTER_RESETS)]),
    )


def read_rollups(
    client: InfluxClient, machines: Iterable[str], edges_ms: Sequence[int] | IntArray
) -> dict[str, UsageSeries]:
    """Usage per bucket summed from ``usage_hourly``; every edge must be a whole UTC hour."""
    edges = np.asarray(edges_ms, dtype=np.int64)
    if not on_utc_hours([int(e) for e in edges]):
        raise ValueError("read_rollups: bucket edges must fall on whole UTC hours")
    names = sorted(set(machines))
    out = {m: UsageSeries.empty(m, edges) for m in names}
    for chunk in range(0, len(names), 50):
        group = names[chunk : chunk + 50]
        for series in client.query_series(
            f"SELECT * FROM {quote_ident(USAGE_HOURLY)} WHERE time >= {int(edges[0])}ms "
            f"AND time < {int(edges[-1])}ms AND {_where_machines(group)} "
            f"GROUP BY {quote_ident(TAG_MACHINE)}"
        ):
            machine = series.tags.get(TAG_MACHINE, "")
            if machine in out and series.values:
                out[machine] = series_from_rollup_rows(
                    machine, series.columns, series.values, edges
                )
    return out


def usage_series(
    client: InfluxClient,
    machines: Iterable[str],
    edges_ms: Sequence[int] | IntArray,
    *,
    from_raw: bool = False,
    max_gap: timedelta = DEFAULT_MAX_GAP,
) -> dict[str, UsageSeries]:
    """Usage per machine per bucket: from rollups, or from raw samples when asked or when
    an edge is not a whole UTC hour (zones with half-hour offsets)."""
    edges = [int(e) for e in edges_ms]
    if from_raw or not on_utc_hours(edges):
        return raw_usage_series(client, machines, edges, max_gap=max_gap)
    return read_rollups(client, machines, edges)


def fleet_usage(
    client: InfluxClient,
    start: datetime,
    end: datetime,
    *,
    machines: Iterable[str] | None = None,
    by: BucketSize | None = None,
    tz: tzinfo = UTC,
    from_raw: bool = False,
) -> list[Usage]:
    """Usage per machine (sorted) and bucket (``by`` = hour, day, month or None for one).

    Buckets are local calendar hours/days/months in ``tz``; the returned start and end
    are in ``tz`` too.
    """
    edges = bucket_edges(start, end, by, tz)
    names = sorted(set(machines)) if machines is not None else telemetry_machines(client)
    found = usage_series(client, names, [to_ms(e) for e in edges], from_raw=from_raw)
    out: list[Usage] = []
    for machine in names:
        for k, usage in enumerate(found[machine].usages()):
            out.append(
                Usage(
                    machine,
                    edges[k],
                    edges[k + 1],
                    usage.state_seconds,
                    usage.known_seconds,
                    usage.counter_seconds,
                    usage.counter_reset,
                )
            )
    return out


__all__ = [
    "RefreshState",
    "default_state_file",
    "fleet_usage",
    "read_rollups",
    "rebuild_rollups",
    "recompute_hours",
    "refresh_rollups",
    "rollup_points",
    "usage_series",
]
