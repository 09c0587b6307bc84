"""From one received MQTT message to encoded line protocol, or to the reason it is invalid.

Pure: no I/O. The MQTT network thread calls ``decode_message`` for every message, so
the writer thread only joins bytes and talks to InfluxDB.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import MutableMapping
from dataclasses import dataclass, field

from contract import ContractError, MachineRef, decode_status, decode_telemetry, parse_topic
from ingest.points import MachineHour, status_point, telemetry_points, touched_hours
from store import encode_points

STATUS_LEAF = "/status"


@dataclass(frozen=True)
class Decoded:
    """A message turned into line protocol (ms precision), or the reason it was refused."""

    lines: bytes = b""
    points: int = 0
    # Telemetry only: points per machine-hour, for the ``ingest_touched`` markers.
    touched: Counter[MachineHour] = field(default_factory=Counter)
    error: str | None = None

    @property
    def valid(self) -> bool:
        return self.error is None


def decode_message(
    topic: str,
    payload: bytes,
    received_ms: int | None = None,
    status_floor: MutableMapping[MachineRef, int] | None = None,
) -> Decoded:
    """Validate a telemetry or status message against the v1 contract and encode its points.

    Anything wrong — not the contract, names that collide, a value line protocol cannot
    carry — comes back as ``Decoded(error=reason)`` for the dead letters; it never raises.
    ``received_ms`` (wall clock) dates an ``online: false`` status no earlier than its
    arrival: the agent's will carries the time it was set at connect, not the time the
    agent died, and would otherwise sort before the agent's own ``online: true``.
    ``status_floor`` (per machine, the time of the last status stored) keeps a machine's
    status points in arrival order: after an ingest outage the queued will is dated at
    its arrival, and the agent's newer ``online: true`` behind it must not sort before it.
    """
    try:
        if topic.endswith(STATUS_LEAF):
            ref = parse_topic(topic, "status")
            if not payload:
                # An empty retained message clears a status: nothing to store.
                return Decoded()
            point = status_point(ref, decode_status(payload), received_ms)
            if status_floor is not None:
                point = point._replace(ts_ms=max(point.ts_ms, status_floor.get(ref, -1) + 1))
                status_floor[ref] = point.ts_ms
            points = [point]
            return Decoded(encode_points(points), len(points))
        ref, message = decode_telemetry(topic, payload)
        points = telemetry_points(ref, message)
        return Decoded(encode_points(points), len(points), touched_hours(ref, points))
    except ContractError as exc:
        return Decoded(error=str(exc))
    except Exception as exc:  # a bug or an input we did not foresee must not stop the stream
        return Decoded(error=f"cannot store the message: {type(exc).__name__}: {exc}")
