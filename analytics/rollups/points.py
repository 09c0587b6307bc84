"""The ``usage_hourly`` point: its fields and version, from a usage series and back (pure).

A point per machine and UTC hour: seconds per state, ``known_s``, the gaps, and when the
machine sent hour-meter readings that hour ``counter_s`` with the meter's anomalies.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from analytics.counters import (
    ANOMALY_KINDS,
    EVENT_LIMIT,
    CounterEvent,
    IntArray,
    decode_events,
    encode_events,
    to_counter_ms,
)
from analytics.machines import MachineKey
from analytics.periods import HOUR_MS
from analytics.usage import N_STATES, UsageSeries
from store import Point
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
    FIELD_KNOWN_S,
    FIELD_ROLLUP_VERSION,
    USAGE_HOURLY,
    state_seconds_field,
)
from wire import STATES

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
