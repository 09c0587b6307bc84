"""Builders shared by the usage, rollup and billing tests (no tests in here).

They write ``telemetry`` points in the ingest's schema (store/schema.py) and the
``ingest_touched`` markers the ingest logs, so tests can state their data by hand.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from store import InfluxClient, Point, encode_points
from store.lineprotocol import FieldValue
from store.schema import (
    FIELD_HOUR,
    FIELD_POINTS,
    FIELD_RUN_SECONDS_TOTAL,
    FIELD_STATE,
    INGEST_TOUCHED,
    TELEMETRY,
)
from wire import to_epoch_ms

BERLIN = ZoneInfo("Europe/Berlin")
HOUR = timedelta(hours=1)
MINUTE = timedelta(minutes=1)


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=UTC)


def berlin(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=BERLIN)


def sample(
    machine: str,
    ts: datetime,
    state: str | None = None,
    *,
    counter: float | None = None,
    values: dict[str, float] | None = None,
    site: str = "plant1",
    line: str = "line-a",
) -> Point:
    """One telemetry point as the ingest writes it."""
    fields: dict[str, FieldValue] = dict(values or {})
    if state is not None:
        fields[FIELD_STATE] = state
    if counter is not None:
        fields[FIELD_RUN_SECONDS_TOTAL] = counter
    if not fields:
        fields["spindle_current_a"] = 1.0  # a heartbeat carries at least one value
    return Point(
        TELEMETRY, {"site": site, "line": line, "machine": machine}, fields, to_epoch_ms(ts)
    )


def steady(
    machine: str,
    state: str,
    start: datetime,
    end: datetime,
    every: timedelta = timedelta(minutes=5),
    **kwargs: str,
) -> list[Point]:
    """Samples of one state every ``every`` in ``[start, end)`` (the first at ``start``)."""
    points = []
    t, end = start.astimezone(UTC), end.astimezone(UTC)  # step in UTC, not wall-clock time
    while t < end:
        points.append(sample(machine, t, state, **kwargs))  # type: ignore[arg-type]
        t += every
    return points


def timeline(
    machine: str, changes: Sequence[tuple[datetime, str]], end: datetime, every: timedelta
) -> list[Point]:
    """A machine that changes state at the given instants and reports every ``every``."""
    points: list[Point] = []
    for (t0, state), nxt in zip(changes, [*[c[0] for c in changes[1:]], end], strict=True):
        points.extend(steady(machine, state, t0, nxt, every))
    return points


def markers(points: Iterable[Point], now_ns: int | None = None) -> list[Point]:
    """The ``ingest_touched`` markers the ingest logs for a write of ``points``."""
    counts: Counter[tuple[str, str, str, int]] = Counter()
    for p in points:
        if p.measurement == TELEMETRY:
            hour = p.ts_ms - p.ts_ms % 3_600_000
            counts[(p.tags["site"], p.tags["line"], p.tags["machine"], hour)] += 1
    base = now_ns if now_ns is not None else time.time_ns()
    return [
        Point(
            INGEST_TOUCHED,
            {"site": site, "line": line, "machine": machine},
            {FIELD_HOUR: float(hour), FIELD_POINTS: float(n)},
            base + i,
        )
        for i, ((site, line, machine, hour), n) in enumerate(sorted(counts.items()))
    ]


def ingest(influx: InfluxClient, points: list[Point]) -> None:
    """Write telemetry and log the touched machine-hours, as the ingest does."""
    influx.write(points)
    influx.write_lines(encode_points(markers(points)), precision="ns")
