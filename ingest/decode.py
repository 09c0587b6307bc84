"""From one received MQTT message to encoded line protocol, or to the reason it is invalid.

Pure: no I/O. The MQTT network thread calls ``decode_message`` for every message, so
the writer thread only joins bytes and talks to InfluxDB.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import MutableMapping
from dataclasses import dataclass, field
from typing import Any

import orjson

from ingest.fastpath import fast_telemetry
from ingest.points import MachineHour, status_point, telemetry_points, touched_hours
from store import encode_points
from wire import MachineRef, WireError, decode_status, decode_telemetry, parse_topic

STATUS_LEAF = "/status"


@dataclass(frozen=True)
class Decoded:
    """A message turned into line protocol (ms precision), or the reason it was refused."""

    lines: bytes = b""
    points: int = 0
    # Telemetry only: points per machine-hour, for the ``ingest_touched`` markers.
    touched: Counter[MachineHour] = field(default_factory=Counter)
    error: str | None = None
    # For the sequence tracker: the machine, and a telemetry message's seq, offset and
    # sample count (read even from an invalid message when they can be), or a status's
    # delivered_seq/delivered_offset.
    ref: MachineRef | None = None
    seq: int | None = None
    offset: int | None = None
    samples: int = 0
    delivered: tuple[int, int | None] | None = None
    # The sender's numbering starts afresh at ``seq`` (a Sparkplug NBIRTH): not a gap.
    restart: bool = False

    @property
    def valid(self) -> bool:
        return self.error is None


def decode_message(
    topic: str,
    payload: bytes,
    received_ms: int | None = None,
    status_floor: MutableMapping[MachineRef, int] | None = None,
    max_bytes: int | None = None,
    *,
    fast: bool = True,
) -> Decoded:
    """Validate a telemetry or status message against the v1 contract and encode its points.

    Anything wrong — not the contract, names that collide, a value line protocol cannot
    carry, more than ``max_bytes`` — comes back as ``Decoded(error=reason)`` for the dead
    letters, before any of it is written; it never raises.
    ``received_ms`` (wall clock) dates an ``online: false`` status no earlier than its
    arrival: the agent's will carries the time it was set at connect, not the time the
    agent died, and would otherwise sort before the agent's own ``online: true``.
    ``status_floor`` (per machine, the time of the last status stored) keeps a machine's
    status points in arrival order: after an ingest outage the queued will is dated at
    its arrival, and the agent's newer ``online: true`` behind it must not sort before it.
    ``fast`` tries ``ingest.fastpath`` first (the same result, sooner); the tests turn it off
    to compare.
    """
    if max_bytes is not None and len(payload) > max_bytes:
        return Decoded(
            error=f"payload: {len(payload)} bytes, more than the ingest takes "
            f"({max_bytes}, ingest.max_message_bytes)"
        )
    try:
        if topic.endswith(STATUS_LEAF):
            ref = parse_topic(topic, "status")
            if not payload:
                # An empty retained message clears a status: nothing to store.
                return Decoded()
            status = decode_status(payload)
            point = status_point(ref, status, received_ms)
            if status_floor is not None:
                point = point._replace(ts_ms=max(point.ts_ms, status_floor.get(ref, -1) + 1))
                status_floor[ref] = point.ts_ms
            delivered = None
            if status.delivered_seq is not None:
                delivered = (status.delivered_seq, status.delivered_offset)
            return Decoded(encode_points([point]), 1, ref=ref, delivered=delivered)
        ref = parse_topic(topic, "telemetry")
        try:
            quick = fast_telemetry(ref, orjson.loads(payload)) if fast else None
        except orjson.JSONDecodeError:  # not plain JSON (NaN, > 64-bit ints, too deep, …):
            quick = None  # the general way judges it
        if quick is not None:
            return Decoded(
                quick.lines,
                quick.points,
                quick.touched,
                ref=ref,
                seq=quick.seq,
                offset=quick.offset,
                samples=quick.points,
            )
        ref, message = decode_telemetry(topic, payload)
        points = telemetry_points(ref, message)
        return Decoded(
            encode_points(points),
            len(points),
            touched_hours(ref, points),
            ref=ref,
            seq=message.seq,
            offset=message.offset,
            samples=len(message.samples),
        )
    except WireError as exc:
        return _refused(topic, payload, str(exc))
    except Exception as exc:  # a bug or an input we did not foresee must not stop the stream
        return _refused(topic, payload, f"cannot store the message: {type(exc).__name__}: {exc}")


def _refused(topic: str, payload: bytes, error: str) -> Decoded:
    """An invalid message, with its machine and seq when they can still be read: a message
    that arrived is no gap, even when it is dead-lettered."""
    try:
        ref = parse_topic(topic, "telemetry")
        body: Any = json.loads(payload)
    except Exception:  # anything unreadable simply has no seq
        return Decoded(error=error)
    if not isinstance(body, dict):
        return Decoded(error=error)
    seq, offset, samples = body.get("seq"), body.get("offset"), body.get("samples")
    if type(seq) is not int or seq < 0:
        return Decoded(error=error)
    return Decoded(
        error=error,
        ref=ref,
        seq=seq,
        offset=offset if type(offset) is int and offset >= 0 else None,
        samples=len(samples) if isinstance(samples, list) else 0,
    )
