"""Hourly usage rollups in InfluxDB (``usage_hourly``), kept current from the ingest's log.

One point per machine (site and id) and UTC hour: seconds per state (``running_s``,
``idle_s``, …), ``known_s``, the gaps, and when the machine sent hour-meter readings in
that hour ``counter_s`` (the billed delta) with the meter's anomalies. Billing reads
these, so a month for a plant is a few thousand rows instead of millions of samples.

The ingest logs every machine-hour it wrote to (``ingest_touched``).
:func:`refresh_rollups` recomputes exactly those hours since its last call, plus the
hours after them that a sample can still change: its state holds up to ``max_gap`` into
the next hour, a stated sample changes the heartbeats after it, and a meter reading
changes the delta of the next reading. :func:`rebuild_rollups` recomputes a range.

Points carry ``rollup_version``. Points of an older version (before site keys, gap
counts and the hour-meter rules) are found when read and recomputed from raw samples
for the hours read (:func:`usage_series`); ``runhours billing rebuild-rollups`` migrates a
whole range at once.

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
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta, tzinfo
from pathlib import Path
from typing import Any

import numpy as np

from analytics.counters import (
    ANOMALY_KINDS,
    EVENT_LIMIT,
    CounterEvent,
    CounterRules,
    IntArray,
    decode_events,
    encode_events,
    to_counter_ms,
)
from analytics.machines import (
    MachineKey,
    MachineRef,
    Ref,
    key_clause,
    resolve_machines,
    telemetry_keys,
)
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
)
from common.errors import RunhoursError
from store import InfluxClient, Point, quote_ident, quote_string
from store.lineprotocol import FieldValue
from store.schema import (
    FIELD_COUNTER_EVENTS,
    FIELD_COUNTER_GLITCHES,
    FIELD_COUNTER_JUMPS,
    FIELD_COUNTER_RESETS,
    FIELD_COUNTER_S,
    FIELD_COUNTER_WRAPS,
    FIELD_GAP_AT_END,
    FIELD_GAP_AT_START,
    FIELD_GAPS,
    FIELD_HOUR,
    FIELD_KNOWN_S,
    FIELD_ROLLUP_VERSION,
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
from wire import STATES, from_epoch_ms

STATE_FIELDS = [state_seconds_field(state) for state in STATES]
COUNT_FIELDS = dict(
    zip(
        ANOMALY_KINDS,
        (FIELD_COUNTER_RESETS, FIELD_COUNTER_WRAPS, FIELD_COUNTER_GLITCHES, FIELD_COUNTER_JUMPS),
        strict=True,
    )
)
# 2: keyed by site and machine, gap fields, hour-meter anomalies (docs/billing.md).
ROLLUP_VERSION = 2

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


def _where_ids(machines: Sequence[str]) -> str:
    """Every site's machines with these ids."""
    return (
        "(" + " OR ".join(f"{quote_ident(TAG_MACHINE)} = {quote_string(m)}" for m in machines) + ")"
    )


class StaleRollupsError(RunhoursError, RuntimeError):
    """``usage_hourly`` holds points of an older version in a range being read."""

    def __init__(self, machines: Sequence[str], start_ms: int, end_ms: int) -> None:
        self.machines = sorted(set(machines))
        self.start_ms, self.end_ms = start_ms, end_ms
        super().__init__(
            f"usage_hourly holds rollups of an older runhours for {', '.join(self.machines)} "
            f"between {from_epoch_ms(start_ms).isoformat()} and "
            f"{from_epoch_ms(end_ms).isoformat()}: recompute them with `runhours billing "
            "rebuild-rollups` (billing and `runhours usage` do it by themselves)"
        )


# -- writing --------------------------------------------------------------------------------


def rollup_points(series: UsageSeries, tags: dict[str, str]) -> list[Point]:
    """Pure: one ``usage_hourly`` point per hour bucket of ``series`` (edges on UTC hours).

    Every field is written on every point that can carry it (``counter_events`` as ``""``
    when there are none): a point written again keeps the old value of a field it omits.
    """
    points = []
    for k in range(len(series)):
        fields: dict[str, FieldValue] = {
            name: int(series.state_ms[k, code]) / 1000
            for name, code in zip(STATE_FIELDS, range(N_STATES), strict=True)
        }
        fields[FIELD_KNOWN_S] = int(series.known_ms[k]) / 1000
        fields[FIELD_GAPS] = float(series.gap_count[k])
        fields[FIELD_GAP_AT_START] = 1.0 if series.gap_at_start[k] else 0.0
        fields[FIELD_GAP_AT_END] = 1.0 if series.gap_at_end[k] else 0.0
        if series.counter_defined[k]:
            fields[FIELD_COUNTER_S] = int(series.counter_ms[k]) / 1000
            for column, name in enumerate(COUNT_FIELDS.values()):
                fields[name] = float(series.counter_counts[k, column])
            fields[FIELD_COUNTER_EVENTS] = encode_events(series.counter_events[k])
        fields[FIELD_ROLLUP_VERSION] = float(ROLLUP_VERSION)
        points.append(Point(USAGE_HOURLY, tags, fields, int(series.edges_ms[k])))
    return points


def machine_tags(
    client: InfluxClient, keys: Sequence[MachineKey]
) -> dict[MachineKey, dict[str, str]]:
    """The tags of each machine's rollups: its site and id, and the line its telemetry
    carries (the first in sort order if several)."""
    statements = [
        f"SHOW TAG VALUES FROM {quote_ident(TELEMETRY)} WITH KEY = {quote_ident(TAG_LINE)} "
        f"WHERE {key_clause(key)}"
        for key in keys
    ]
    out: dict[MachineKey, dict[str, str]] = {}
    for chunk in range(0, len(keys), 200):
        group = keys[chunk : chunk + 200]
        results = client.query("; ".join(statements[chunk : chunk + 200]))
        for key, result in zip(group, results, strict=True):
            lines = sorted(row[1] for series in result for row in series.values)
            tags = {TAG_SITE: key.site, TAG_MACHINE: key.machine}
            if lines:
                tags[TAG_LINE] = lines[0]
            out[key] = tags
    return out


def retagged_machines(
    client: InfluxClient, tags: dict[MachineKey, dict[str, str]]
) -> set[MachineKey]:
    """Machines whose ``usage_hourly`` also holds series under another line.

    A machine that moved to a line that sorts first gets its rollups written under new
    tags; the old points of the hours recomputed then must go, or a reader would count
    those hours twice.
    """
    keys = sorted(tags)
    out = set()
    for chunk in range(0, len(keys), 200):
        group = keys[chunk : chunk + 200]
        statements = [
            f"SHOW TAG VALUES FROM {quote_ident(USAGE_HOURLY)} WITH KEY = {quote_ident(TAG_LINE)} "
            f"WHERE {key_clause(key)}"
            for key in group
        ]
        for key, result in zip(group, client.query("; ".join(statements)), strict=True):
            if any(row[1] != tags[key].get(TAG_LINE) for s in result for row in s.values):
                out.add(key)
    return out


def _delete_other_tags(
    client: InfluxClient, key: MachineKey, tags: dict[str, str], lo: int, hi: int
) -> None:
    """Delete the machine's rollup points in ``[lo, hi)`` that carry another line."""
    line = tags.get(TAG_LINE, "")
    client.query(
        f"DELETE FROM {quote_ident(USAGE_HOURLY)} WHERE {key_clause(key)} "
        f"AND {quote_ident(TAG_LINE)} != {quote_string(line)} "
        f"AND time >= {lo}ms AND time < {hi}ms",
        epoch=None,
    )


def _compute_and_write(
    client: InfluxClient,
    key: MachineKey,
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
            client, key, lo, hi, max_gap=max_gap, carry_horizon=carry_horizon, fields=fields
        )
        edges = np.arange(lo, hi + 1, HOUR_MS, dtype=np.int64)
        series = series_from_samples(
            key, samples, edges, max_gap=max_gap, carry_horizon=carry_horizon
        )
        client.write(rollup_points(series, tags))
        if retagged:  # written first: the hours are never missing, only briefly doubled
            _delete_other_tags(client, key, tags, lo, hi)
        hours += len(series)
    return hours


def rebuild_rollups(
    client: InfluxClient,
    start: datetime,
    end: datetime,
    machines: Iterable[MachineRef] | None = None,
    *,
    max_gap: timedelta = DEFAULT_MAX_GAP,
    carry_horizon: timedelta = CARRY_HORIZON,
    workers: int = 4,
) -> int:
    """Recompute ``usage_hourly`` for every UTC hour overlapping ``[start, end)``.

    ``machines`` (keys or names; a bare id must exist at one site) defaults to every
    machine with telemetry. Returns the machine-hours written. Use it to backfill, after
    changing ``max_gap``, to migrate rollups of an older version, or when data was
    written without the ingest (which logs what it touched for :func:`refresh_rollups`).
    """
    if machines is None:
        keys = telemetry_keys(client)
    else:
        keys = sorted({k for k in resolve_machines(client, machines).values() if k.site})
    if not keys:
        return 0
    first_hour, end_hour = _floor_hour(to_ms(start)), _ceil_hour(to_ms(end))
    fields = telemetry_fields(client)
    tags = machine_tags(client, keys)
    retagged = retagged_machines(client, tags)

    def one(key: MachineKey) -> int:
        return _compute_and_write(
            client,
            key,
            tags[key],
            first_hour,
            end_hour,
            fields,
            max_gap,
            carry_horizon,
            key in retagged,
        )

    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        return sum(pool.map(one, keys))


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
    key: MachineKey,
    end_ms: int,
    max_gap: timedelta,
    carry_horizon: timedelta,
) -> int:
    """The end of what samples before ``end_ms`` can change in the hours after it.

    The last sample's state holds up to ``max_gap`` past it; heartbeats after it carry
    its state until the next stated sample (or the chain breaks); the next meter reading
    after it reports a delta relative to it.
    """
    where = key_clause(key)
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
    touched: dict[MachineKey, set[int]],
    *,
    max_gap: timedelta = DEFAULT_MAX_GAP,
    carry_horizon: timedelta = CARRY_HORIZON,
    workers: int = 4,
) -> int:
    """Recompute the given machine-hours (epoch ms of UTC hour starts) and what they affect."""
    keys = sorted(k for k, hours in touched.items() if hours)
    if not keys:
        return 0
    fields = telemetry_fields(client)
    tags = machine_tags(client, keys)
    retagged = retagged_machines(client, tags)

    def one(key: MachineKey) -> int:
        ranges: list[tuple[int, int]] = []
        for first, end in _runs(touched[key]):
            stop = _ceil_hour(affected_end(client, key, end, max_gap, carry_horizon))
            if ranges and first <= ranges[-1][1]:
                ranges[-1] = (ranges[-1][0], max(ranges[-1][1], stop))
            else:
                ranges.append((first, stop))
        return sum(
            _compute_and_write(
                client,
                key,
                tags[key],
                a,
                b,
                fields,
                max_gap,
                carry_horizon,
                key in retagged,
            )
            for a, b in ranges
        )

    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        return sum(pool.map(one, keys))


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


def touched_since(
    client: InfluxClient, after_ns: int | None
) -> tuple[dict[MachineKey, set[int]], int]:
    """Machine-hours the ingest logged after ``after_ns`` and the newest marker time (ns)."""
    clause = f" WHERE time > {after_ns}" if after_ns is not None else ""
    series = client.query_series(
        f"SELECT {quote_ident(FIELD_HOUR)} FROM {quote_ident(INGEST_TOUCHED)}{clause} "
        f"GROUP BY {quote_ident(TAG_SITE)}, {quote_ident(TAG_MACHINE)}",
        epoch="ns",
    )
    touched: dict[MachineKey, set[int]] = {}
    newest = after_ns if after_ns is not None else 0
    for s in series:
        key = MachineKey(s.tags.get(TAG_SITE, ""), s.tags.get(TAG_MACHINE, ""))
        hours = touched.setdefault(key, set())
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
    with refresh_lock(state_file):
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
def refresh_lock(state_file: Path) -> Iterator[None]:
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
    key: MachineKey, columns: Sequence[str], rows: Sequence[Sequence[Any]], edges: IntArray
) -> UsageSeries:
    """Pure: sum ``usage_hourly`` rows (time first, then fields by ``columns``) into buckets.

    An hour without a row had no data at all: it counts as one gap, open at both ends.
    """
    n = edges.size - 1
    col = {name: i for i, name in enumerate(columns)}
    ts = np.asarray([r[0] for r in rows], dtype=np.int64)
    slot = np.searchsorted(edges, ts, side="right") - 1
    ok = (slot >= 0) & (slot < n)
    where = slot[ok]
    hour_of = (ts - int(edges[0])) // HOUR_MS
    first_hour = (edges[:-1] - edges[0]) // HOUR_MS
    end_hour = (edges[1:] - edges[0]) // HOUR_MS
    n_hours = int(end_hour[-1]) if n else 0

    def present(name: str) -> list[Any]:
        i = col.get(name)
        return [None] * len(rows) if i is None else [r[i] for r in rows]

    def summed_ms(name: str) -> IntArray:
        values = to_counter_ms([0.0 if v is None else v for v in present(name)])
        out = np.zeros(n, np.int64)
        np.add.at(out, where, values[ok])
        return out

    def summed(name: str) -> IntArray:
        values = np.asarray([0 if v is None else round(v) for v in present(name)], np.int64)
        out = np.zeros(n, np.int64)
        np.add.at(out, where, values[ok])
        return out

    def hourly(name: str, default: int) -> IntArray:
        out = np.full(n_hours, default, np.int64)
        values = np.asarray([default if v is None else round(v) for v in present(name)], np.int64)
        out[hour_of[ok]] = values[ok]
        return out

    state_ms = np.stack([summed_ms(field) for field in STATE_FIELDS], axis=1)
    defined = np.zeros(n, np.bool_)
    has_counter = np.asarray([v is not None for v in present(FIELD_COUNTER_S)], np.bool_)
    defined[slot[ok & has_counter]] = True
    counts = np.stack([summed(name) for name in COUNT_FIELDS.values()], axis=1)
    events: list[list[CounterEvent]] = [[] for _ in range(n)]
    texts = present(FIELD_COUNTER_EVENTS)
    for i in np.argsort(ts, kind="stable").tolist():
        if ok[i] and texts[i]:
            events[int(slot[i])].extend(decode_events(texts[i]))
    # Gaps: hours add up as documented in analytics.usage.gaps_by_bucket.
    gaps = hourly(FIELD_GAPS, 1)
    at_start = hourly(FIELD_GAP_AT_START, 1).astype(np.bool_)
    at_end = hourly(FIELD_GAP_AT_END, 1).astype(np.bool_)
    joins = np.concatenate([[0], np.cumsum(at_end[:-1] & at_start[1:])]) if n_hours else np.zeros(1)
    total = np.concatenate([[0], np.cumsum(gaps)])
    gap_count = (
        total[end_hour] - total[first_hour] - (joins[end_hour - 1] - joins[first_hour])
    ).astype(np.int64)
    return UsageSeries(
        key,
        edges,
        state_ms.reshape(n, N_STATES),
        summed_ms(FIELD_KNOWN_S),
        summed_ms(FIELD_COUNTER_S),
        defined,
        counts.reshape(n, len(ANOMALY_KINDS)),
        tuple(tuple(e[:EVENT_LIMIT]) for e in events),
        gap_count,
        at_start[first_hour] if n_hours else np.zeros(n, np.bool_),
        at_end[end_hour - 1] if n_hours else np.zeros(n, np.bool_),
    )


def read_rollups(
    client: InfluxClient, machines: Iterable[Ref], edges_ms: Sequence[int] | IntArray
) -> dict[Ref, UsageSeries]:
    """Usage per bucket summed from ``usage_hourly``; every edge must be a whole UTC hour.

    ``machines`` are keys or names (a bare id must exist at one site); the result is
    keyed by them as given. Raises :class:`StaleRollupsError` when the range holds points
    of an older rollup version for any of their ids (at any site).
    """
    edges = np.asarray(edges_ms, dtype=np.int64)
    if not on_utc_hours([int(e) for e in edges]):
        raise ValueError("read_rollups: bucket edges must fall on whole UTC hours")
    refs = resolve_machines(client, machines)
    keys = sorted(set(refs.values()))
    found = {k: UsageSeries.empty(k, edges) for k in keys}
    ids = sorted({k.machine for k in keys if k.site})
    stale: dict[str, list[int]] = {}  # id -> hours written by an older version
    for chunk in range(0, len(ids), 50):
        group = ids[chunk : chunk + 50]
        for series in client.query_series(
            f"SELECT * FROM {quote_ident(USAGE_HOURLY)} WHERE time >= {int(edges[0])}ms "
            f"AND time < {int(edges[-1])}ms AND {_where_ids(group)} "
            f"GROUP BY {quote_ident(TAG_SITE)}, {quote_ident(TAG_MACHINE)}"
        ):
            key = MachineKey(series.tags.get(TAG_SITE, ""), series.tags.get(TAG_MACHINE, ""))
            version = (
                series.columns.index(FIELD_ROLLUP_VERSION)
                if FIELD_ROLLUP_VERSION in series.columns
                else None
            )
            old = [
                int(row[0])
                for row in series.values
                if version is None or (row[version] or 0) < ROLLUP_VERSION
            ]
            if old:
                stale.setdefault(key.machine, []).extend(old)
            elif key in found and series.values:
                found[key] = series_from_rollup_rows(key, series.columns, series.values, edges)
    if stale:
        hours = [h for found_hours in stale.values() for h in found_hours]
        raise StaleRollupsError(sorted(stale), min(hours), max(hours) + HOUR_MS)
    return {ref: found[key] for ref, key in refs.items()}


def migrate_rollups(client: InfluxClient, stale: StaleRollupsError) -> int:
    """Recompute the hours of a :class:`StaleRollupsError` for every site's machines with
    its ids; returns the machine-hours written."""
    keys = [k for k in telemetry_keys(client) if k.machine in set(stale.machines)]
    start, end = from_epoch_ms(stale.start_ms), from_epoch_ms(stale.end_ms)
    return rebuild_rollups(client, start, end, keys) if keys else 0


def usage_series(
    client: InfluxClient,
    machines: Iterable[Ref],
    edges_ms: Sequence[int] | IntArray,
    *,
    from_raw: bool = False,
    max_gap: timedelta = DEFAULT_MAX_GAP,
    rules: CounterRules = CounterRules(),
) -> dict[Ref, UsageSeries]:
    """Usage per machine per bucket: from rollups, or from raw samples when asked, when an
    edge is not a whole UTC hour (zones with half-hour offsets) or when the hour-meter
    ``rules`` are not the rollups' defaults.

    Rollups of an older version in the range are recomputed first (once; if some cannot
    be, :class:`StaleRollupsError` says which).
    """
    refs = list(machines)
    edges = [int(e) for e in edges_ms]
    if from_raw or not on_utc_hours(edges) or not rules.is_default:
        return raw_usage_series(client, refs, edges, max_gap=max_gap, rules=rules)
    try:
        return read_rollups(client, refs, edges)
    except StaleRollupsError as stale:
        migrate_rollups(client, stale)
        return read_rollups(client, refs, edges)


def fleet_usage(
    client: InfluxClient,
    start: datetime,
    end: datetime,
    *,
    machines: Iterable[MachineRef] | None = None,
    by: BucketSize | None = None,
    tz: tzinfo = UTC,
    from_raw: bool = False,
    rules: CounterRules = CounterRules(),
) -> list[Usage]:
    """Usage per machine (sorted by site and id) and bucket (``by`` = hour, day, month or
    None for one). ``machines`` are keys or names; a bare id that exists at two sites is
    an error (:class:`analytics.machines.MachineError`), never a merge.

    Buckets are local calendar hours/days/months in ``tz``; the returned start and end
    are in ``tz`` too.
    """
    edges = bucket_edges(start, end, by, tz)
    if machines is None:
        keys = telemetry_keys(client)
    else:
        keys = sorted(set(resolve_machines(client, machines).values()))
    found = usage_series(client, keys, [to_ms(e) for e in edges], from_raw=from_raw, rules=rules)
    return [
        replace(usage, start=edges[k], end=edges[k + 1])
        for key in keys
        for k, usage in enumerate(found[key].usages())
    ]


__all__ = [
    "RefreshState",
    "StaleRollupsError",
    "default_state_file",
    "fleet_usage",
    "migrate_rollups",
    "read_rollups",
    "rebuild_rollups",
    "recompute_hours",
    "refresh_rollups",
    "rollup_points",
    "usage_series",
]
