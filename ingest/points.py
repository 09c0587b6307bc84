"""What the ingest writes to InfluxDB, as pure functions from validated messages to points.

The schema is documented in ``store/schema.py``; escaping happens in ``store``'s line
protocol encoder, so a machine id or value name can never inject a tag or a field.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from typing import Any

from ingest.sequence import Gap, Hole
from store import Point
from store.lineprotocol import FieldValue
from store.schema import (
    FIELD_BUFFERED,
    FIELD_CAUSE,
    FIELD_DROPPED_TOTAL,
    FIELD_END_OFFSET,
    FIELD_FIRST_SEQ,
    FIELD_HOUR,
    FIELD_LAST_SEQ,
    FIELD_MESSAGES,
    FIELD_MISSING,
    FIELD_ONLINE,
    FIELD_POINTS,
    FIELD_RECOVERED_MESSAGES,
    FIELD_RECOVERED_SAMPLES,
    FIELD_SAMPLES,
    FIELD_SEQ,
    FIELD_STATE,
    FIELD_WORKER,
    INGEST_GAPS,
    INGEST_SEQUENCE,
    INGEST_TOUCHED,
    MACHINE_STATUS,
    TAG_LINE,
    TAG_MACHINE,
    TAG_SITE,
    TELEMETRY,
)
from wire import MachineRef, Status, Telemetry, WireError, to_epoch_ms

HOUR_MS = 3_600_000

# One machine-hour the ingest wrote to: (site, line, machine, epoch ms of the UTC hour start).
MachineHour = tuple[MachineRef, int]


def machine_tags(ref: MachineRef) -> dict[str, str]:
    return {TAG_SITE: ref.site, TAG_LINE: ref.line, TAG_MACHINE: ref.machine}


# Names a value or counter cannot take: what else they would mean in a telemetry point.
RESERVED_FIELDS: Mapping[str, str] = {
    FIELD_STATE: "the sample's state",
    # InfluxDB 1.x silently drops a field called `time` and stores the point's other fields.
    "time": "the point's timestamp",
    TAG_SITE: "a tag of every telemetry point",
    TAG_LINE: "a tag of every telemetry point",
    TAG_MACHINE: "a tag of every telemetry point",
}


def _check_names(names: Iterable[str], where: str) -> None:
    for name in names:
        if name in RESERVED_FIELDS:
            raise WireError(
                f"{where}.{name}: the name is reserved for {RESERVED_FIELDS[name]}; rename it"
            )


def telemetry_points(ref: MachineRef, message: Telemetry) -> list[Point]:
    """One ``telemetry`` point per sample, at the sample's own time (ms).

    Fields: every value (float), ``state`` when the sample has one, and the message's
    counters on its last sample (the counters were read at that instant). Raises
    ``WireError`` for names a point cannot carry: a value or counter named like a
    ``RESERVED_FIELDS`` entry (``state``, ``time``, a tag), or a counter that is also a
    value of the last sample.
    """
    tags = machine_tags(ref)
    _check_names(message.counters, "counters")
    last = len(message.samples) - 1
    points: list[Point] = []
    for index, sample in enumerate(message.samples):
        _check_names(sample.values, f"samples.{index}.values")
        fields: dict[str, FieldValue] = dict(sample.values)
        if sample.state is not None:
            fields[FIELD_STATE] = sample.state
        if index == last and message.counters:
            clash = sorted(set(message.counters) & set(fields))
            if clash:
                raise WireError(
                    f"counters.{clash[0]}: the last sample already has a field of that "
                    "name; counters and values must be named differently"
                )
            fields.update(message.counters)
        points.append(Point(TELEMETRY, tags, fields, sample.ts_ms))
    return points


def status_point(ref: MachineRef, status: Status, received_ms: int | None = None) -> Point:
    """A ``machine_status`` point at the status's time: online 1.0/0.0, edge buffer health.

    An offline status (the will) is dated no earlier than ``received_ms``, its arrival.
    """
    fields: dict[str, FieldValue] = {FIELD_ONLINE: 1.0 if status.online else 0.0}
    if status.buffered is not None:
        fields[FIELD_BUFFERED] = float(status.buffered)
    if status.dropped_total is not None:
        fields[FIELD_DROPPED_TOTAL] = float(status.dropped_total)
    ts_ms = to_epoch_ms(status.ts)
    if not status.online and received_ms is not None:
        ts_ms = max(ts_ms, received_ms)
    return Point(MACHINE_STATUS, machine_tags(ref), fields, ts_ms)


def hour_start_ms(ts_ms: int) -> int:
    """Epoch ms of the UTC hour that contains ``ts_ms``."""
    return ts_ms - ts_ms % HOUR_MS


def touched_hours(ref: MachineRef, points: Iterable[Point]) -> Counter[MachineHour]:
    """How many of a machine's points fall into each UTC hour."""
    return Counter((ref, hour_start_ms(p.ts_ms)) for p in points)


def touched_markers(touched: Mapping[MachineHour, int], now_ns: int) -> list[Point]:
    """``ingest_touched`` markers for one successful write, in ns precision.

    The timestamps are ``now_ns + index`` so markers of one write never overwrite each
    other (same tag set + same time would be the same point). Note: ``Point.ts_ms``
    carries nanoseconds here; write these with ``precision="ns"``.
    """
    return [
        Point(
            INGEST_TOUCHED,
            machine_tags(ref),
            {FIELD_HOUR: float(hour), FIELD_POINTS: float(count)},
            now_ns + index,
        )
        for index, ((ref, hour), count) in enumerate(sorted(touched.items()))
    ]


def gap_point(gap: Gap, cause: str, worker: str) -> Point:
    """The ``ingest_gaps`` point of a newly detected gap (ns precision: ``gap.key_ns``)."""
    fields: dict[str, FieldValue] = {
        FIELD_FIRST_SEQ: float(gap.first_seq),
        FIELD_LAST_SEQ: float(gap.last_seq),
        FIELD_MESSAGES: float(gap.messages),
        FIELD_RECOVERED_MESSAGES: 0.0,
        FIELD_RECOVERED_SAMPLES: 0.0,
        FIELD_MISSING: f"{gap.first_seq}-{gap.last_seq}",
        FIELD_CAUSE: cause,
        FIELD_WORKER: worker,
    }
    if gap.samples is not None:
        fields[FIELD_SAMPLES] = float(gap.samples)
    return Point(INGEST_GAPS, machine_tags(gap.ref), fields, gap.key_ns)


def gap_copy(row: Mapping[str, Any]) -> Point:
    """The ``ingest_gaps`` point a query row (``SELECT *``, ``epoch="ns"``) was read from:
    same series, time and fields (numbers are floats, the rest strings)."""
    tags = {tag: row[tag] for tag in (TAG_SITE, TAG_LINE, TAG_MACHINE)}
    fields: dict[str, FieldValue] = {
        name: value if isinstance(value, str) else float(value)
        for name, value in row.items()
        if name != "time" and name not in tags and value is not None
    }
    return Point(INGEST_GAPS, tags, fields, int(row["time"]))


def recovery_point(hole: Hole) -> Point:
    """Rewrites the recovered counts of a gap whose messages arrived late (same point)."""
    fields: dict[str, FieldValue] = {
        FIELD_RECOVERED_MESSAGES: float(hole.recovered_messages),
        FIELD_RECOVERED_SAMPLES: float(hole.recovered_samples),
        FIELD_MISSING: hole.missing_text,
    }
    return Point(INGEST_GAPS, machine_tags(hole.gap.ref), fields, hole.gap.key_ns)


def sequence_point(
    ref: MachineRef, seq: int, end_offset: int | None, worker: str, now_ns: int
) -> Point:
    """Where a machine's sequence stands (``ingest_sequence``, ns precision)."""
    fields: dict[str, FieldValue] = {
        FIELD_SEQ: float(seq),
        FIELD_END_OFFSET: float(-1 if end_offset is None else end_offset),
        FIELD_WORKER: worker,
    }
    return Point(INGEST_SEQUENCE, machine_tags(ref), fields, now_ns)
