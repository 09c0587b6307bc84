"""Sparkplug B messages → the same ``Decoded`` (line protocol) the v1 JSON path produces.

Stateful, because Sparkplug is: an NBIRTH/DBIRTH declares each metric's name, alias and
datatype, later NDATA/DDATA may name metrics by alias only and leave the datatype out, and
``seq`` (0-255, wrapping) runs per edge node across all its messages. Called from the MQTT
network thread, in arrival order; no I/O (a rebirth request comes back to the caller).

- Births and data become ``telemetry`` points of the machine the group/node/device ids map
  to (``SparkplugOptions``), one sample per metric timestamp: the ``state_metric`` gives the
  state, numbers and booleans are values, a metric named (or mapped to)
  ``run_seconds_total`` is the hour meter. ``is_historical`` metrics are stored at their own
  timestamps and never mark a machine online; ``is_transient`` metrics are not stored.
- NBIRTH/DBIRTH mark the machines online, NDEATH (with the ``bdSeq`` of the current birth;
  an older one is a stale will and is ignored) and DDEATH offline (``machine_status``).
- ``seq`` is unwrapped into a counter per node session and handed to the ingest's
  ``SequenceTracker`` under the node's machine, so gaps are counted and written
  (``ingest_gaps``) like any others; an NBIRTH starts the count afresh.
- A metric whose alias no birth declared (or a node or device whose birth was not seen)
  cannot be read: the message is refused (dead letter) and the node is asked to rebirth
  (NCMD ``Node Control/Rebirth``), at most once per ``rebirth_interval``.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable, MutableMapping
from dataclasses import dataclass, field

from ingest.config import SparkplugOptions
from ingest.decode import Decoded
from ingest.points import status_point, telemetry_points, touched_hours
from store import Point, encode_points
from wire import STATES, MachineRef, Sample, State, Status, Telemetry, WireError
from wire import sparkplug_b_pb2 as pb
from wire.payloads import MAX_TS_MS, VALUE_NAME, from_epoch_ms
from wire.sparkplug import (
    BD_SEQ,
    SEQ_MODULUS,
    Metric,
    SparkplugTopic,
    decode_payload,
    metric_value,
    parse_sparkplug_topic,
    rebirth_request,
)

log = logging.getLogger(__name__)

COUNTER = "run_seconds_total"
_CONTROL = ("Node Control/", "Device Control/")
Command = tuple[str, bytes]  # topic, payload to publish (QoS 0)


@dataclass
class _Session:
    """One edge node since its NBIRTH."""

    bd_seq: int | None
    raw_seq: int
    count: int  # seq unwrapped, from the birth's own seq
    # alias → (name, datatype), and (device, name) → datatype, from the births
    aliases: dict[int, tuple[str, int]] = field(default_factory=dict)
    datatypes: dict[tuple[str | None, str], int] = field(default_factory=dict)
    devices: set[str] = field(default_factory=set)  # born, not dead


def value_name(metric: str, mapping: dict[str, str]) -> str | None:
    """The value name of a Sparkplug metric: as mapped, else lower-cased with every run of
    other characters as one ``_``; None when nothing usable is left."""
    if metric in mapping:
        return mapping[metric]
    name = re.sub(r"[^a-z0-9]+", "_", metric.lower()).strip("_")[:64].rstrip("_")
    return name if VALUE_NAME.fullmatch(name) else None


class SparkplugDecoder:
    """Follows every edge node's births; ``decode`` turns a message into ``Decoded``."""

    def __init__(
        self, options: SparkplugOptions, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.options = options
        self._clock = clock
        self._sessions: dict[tuple[str, str], _Session] = {}
        self._rebirth_at: dict[tuple[str, str], float] = {}
        self._skipped: set[tuple[str, str]] = set()  # (node, metric) logged as not stored
        self.rebirths_requested = 0

    # -- ids --------------------------------------------------------------------------------

    def ref(self, topic: SparkplugTopic) -> MachineRef:
        """The machine a node (no device) or a device maps to."""
        ids = {"group": topic.group, "node": topic.node, "device": topic.device or ""}
        o = self.options
        machine = o.node_machine if topic.device is None else o.machine
        ref = MachineRef(o.site.format(**ids), o.line.format(**ids), machine.format(**ids))
        for what, value in zip(("site", "line", "machine"), ref, strict=True):
            if not re.fullmatch(r"[A-Za-z0-9_.-]{1,64}", value):
                raise WireError(
                    f"topic: {topic} maps to {what} {value!r}, not a valid id "
                    "([A-Za-z0-9_.-]{1,64}; see ingest.sparkplug templates)"
                )
        return ref

    def node_ref(self, topic: SparkplugTopic) -> MachineRef:
        return self.ref(topic._replace(device=None))

    # -- decoding ---------------------------------------------------------------------------

    def decode(
        self,
        topic_name: str,
        raw: bytes,
        received_ms: int,
        status_floor: MutableMapping[MachineRef, int] | None = None,
    ) -> tuple[Decoded, Command | None]:
        """One Sparkplug message; never raises (a bug becomes a dead letter's reason)."""
        command: list[Command] = []
        try:
            topic = parse_sparkplug_topic(topic_name)
            if topic.type in ("NCMD", "DCMD"):
                return Decoded(), None  # commands (ours included) are not data
            payload = decode_payload(raw)
            decoded = self._decode(topic, payload, received_ms, status_floor, command)
        except WireError as exc:
            decoded = Decoded(error=str(exc))
        except Exception as exc:
            decoded = Decoded(error=f"cannot store the message: {type(exc).__name__}: {exc}")
        return decoded, command[0] if command else None

    def _decode(
        self,
        topic: SparkplugTopic,
        payload: pb.Payload,
        received_ms: int,
        floor: MutableMapping[MachineRef, int] | None,
        command: list[Command],
    ) -> Decoded:
        key = (topic.group, topic.node)
        node_ref = self.node_ref(topic)
        if topic.type == "NBIRTH":
            bd_seq = next((int(m.long_value or m.int_value) for m in payload.metrics
                           if m.name == BD_SEQ), None)  # fmt: skip
            session = _Session(bd_seq, payload.seq, payload.seq)
            self._sessions[key] = session
            self._learn(session, None, payload.metrics)
            return self._data(topic, payload, session, received_ms, floor, online=True,
                              restart=True, ref=node_ref)  # fmt: skip
        found = self._sessions.get(key)
        if topic.type == "NDEATH":
            bd_seq = next((int(m.long_value or m.int_value) for m in payload.metrics
                           if m.name == BD_SEQ), None)  # fmt: skip
            if found is None or (bd_seq is not None and bd_seq != found.bd_seq):
                log.info("%s: NDEATH of an earlier session (bdSeq %s), ignored", topic, bd_seq)
                return Decoded()
            del self._sessions[key]
            offline = [node_ref] + [
                self.ref(topic._replace(device=d)) for d in sorted(found.devices)
            ]
            return self._status(offline, False, payload, received_ms, floor)
        if found is None:
            self._ask_rebirth(topic, command, "no NBIRTH seen from this edge node")
            if topic.type in ("DDEATH",):
                return self._status([self.ref(topic)], False, payload, received_ms, floor)
            return self._data(topic, payload, None, received_ms, floor, ref=self.ref(topic))
        session = found
        seq = self._next_seq(session, payload)
        ref = self.ref(topic)
        if topic.type == "DBIRTH":
            session.devices.add(topic.device or "")
            self._learn(session, topic.device, payload.metrics)
            return self._data(topic, payload, session, received_ms, floor, online=True,
                              seq=seq, ref=ref, node_ref=node_ref)  # fmt: skip
        if topic.type == "DDEATH":
            session.devices.discard(topic.device or "")
            decoded = self._status([ref], False, payload, received_ms, floor)
            return _with_seq(decoded, node_ref, seq)
        if topic.device is not None and topic.device not in session.devices:
            self._ask_rebirth(topic, command, f"no DBIRTH seen from device {topic.device}")
        try:
            return self._data(topic, payload, session, received_ms, floor, seq=seq, ref=ref,
                              node_ref=node_ref)  # fmt: skip
        except _Unknown as exc:
            self._ask_rebirth(topic, command, str(exc))
            return Decoded(error=f"{exc}; a rebirth was requested", ref=node_ref, seq=seq)

    def _next_seq(self, session: _Session, payload: pb.Payload) -> int:
        step = (payload.seq - session.raw_seq) % SEQ_MODULUS
        session.raw_seq = payload.seq
        session.count += step  # 0: the same message again (a duplicate)
        return session.count

    def _learn(self, session: _Session, device: str | None, metrics: list[Metric]) -> None:
        for metric in metrics:
            if not metric.HasField("name"):
                continue
            session.datatypes[(device, metric.name)] = metric.datatype
            if metric.HasField("alias"):
                session.aliases[metric.alias] = (metric.name, metric.datatype)

    def _ask_rebirth(self, topic: SparkplugTopic, command: list[Command], why: str) -> None:
        key = (topic.group, topic.node)
        now = self._clock()
        last = self._rebirth_at.get(key)
        if last is not None and now - last < self.options.rebirth_interval:
            return
        self._rebirth_at[key] = now
        self.rebirths_requested += 1
        ncmd = SparkplugTopic(topic.group, "NCMD", topic.node)
        log.warning("%s: %s; asking the edge node to rebirth (%s)", topic, why, ncmd)
        command.append((str(ncmd), rebirth_request(time.time_ns() // 1_000_000)))

    # -- points -----------------------------------------------------------------------------

    def _data(
        self,
        topic: SparkplugTopic,
        payload: pb.Payload,
        session: _Session | None,
        received_ms: int,
        floor: MutableMapping[MachineRef, int] | None,
        *,
        ref: MachineRef,
        online: bool = False,
        restart: bool = False,
        seq: int | None = None,
        node_ref: MachineRef | None = None,
    ) -> Decoded:
        samples = self._samples(topic, payload, session, received_ms)
        points: list[Point] = []
        if samples:
            message = Telemetry(machine=ref.machine, seq=0, samples=samples)
            points = telemetry_points(ref, message)
        touched = touched_hours(ref, points)
        if online:
            ts = payload.timestamp if payload.HasField("timestamp") else received_ms
            points.append(self._status_point(ref, True, ts, received_ms, floor))
        if restart:
            seq = payload.seq
        return Decoded(
            encode_points(points),
            len(points),
            touched,
            ref=node_ref or ref,
            seq=None if session is None else seq,
            samples=len(samples),
            restart=restart,
        )

    def _samples(
        self,
        topic: SparkplugTopic,
        payload: pb.Payload,
        session: _Session | None,
        received_ms: int,
    ) -> list[Sample]:
        o = self.options
        default_ts = payload.timestamp if payload.HasField("timestamp") else received_ms
        by_ts: dict[int, tuple[dict[str, float], list[State]]] = {}
        for index, metric in enumerate(payload.metrics):
            name, datatype = self._identify(topic, session, metric, index)
            if name == BD_SEQ or name.startswith(_CONTROL) or metric.is_transient:
                continue
            value = metric_value(metric, datatype)
            if value is None:
                continue  # a null metric: no value at that time
            ts = metric.timestamp if metric.HasField("timestamp") else default_ts
            if ts > MAX_TS_MS:
                raise WireError(f"metrics[{index}] ({name}): timestamp {ts} out of range")
            values, states = by_ts.setdefault(ts, ({}, []))
            if name == o.state_metric:
                state = self._state(value)
                if state is not None:
                    states.append(state)
                continue
            target = value_name(name, o.metrics)
            if isinstance(value, str) or target is None:
                if (topic.node, name) not in self._skipped:
                    self._skipped.add((topic.node, name))
                    log.warning("%s: metric %r is not a number or has no usable name: not stored",
                                topic, name)  # fmt: skip
                continue
            values[target] = value
        samples = []
        for ts in sorted(by_ts):
            values, states = by_ts[ts]
            if values or states:
                state = states[-1] if states else None
                samples.append(Sample(ts=from_epoch_ms(ts), state=state, values=values))
        return samples

    def _identify(
        self, topic: SparkplugTopic, session: _Session | None, metric: Metric, index: int
    ) -> tuple[str, int]:
        """The metric's name and datatype, from itself or from the births."""
        name = metric.name if metric.HasField("name") else None
        datatype = metric.datatype if metric.HasField("datatype") else None
        if name is None and metric.HasField("alias"):
            known = session.aliases.get(metric.alias) if session is not None else None
            if known is None:
                raise _Unknown(
                    f"metrics[{index}]: alias {metric.alias} is not in the births of {topic}"
                )
            name, datatype = known[0], datatype if datatype is not None else known[1]
        if name is None:
            raise WireError(f"metrics[{index}]: neither a name nor an alias")
        if datatype is None and session is not None:
            datatype = session.datatypes.get((topic.device, name))
        if datatype is None:
            raise _Unknown(f"metrics[{index}] ({name}): no datatype, and no birth declares it")
        return name, datatype

    def _state(self, value: float | str) -> State | None:
        key = value if isinstance(value, str) else f"{value:g}"
        named = self.options.state_map.get(key)
        if named is not None:
            return named
        for state in STATES:
            if key == state:
                return state
        if ("", key) not in self._skipped:
            self._skipped.add(("", key))
            log.warning("state metric value %r is not a state and state_map does not name it", key)
        return None

    def _status_point(
        self,
        ref: MachineRef,
        online: bool,
        ts_ms: int,
        received_ms: int,
        floor: MutableMapping[MachineRef, int] | None,
    ) -> Point:
        point = status_point(ref, Status(online=online, ts=from_epoch_ms(ts_ms)), received_ms)
        if floor is not None:  # keep a machine's statuses in arrival order (decode.py)
            point = point._replace(ts_ms=max(point.ts_ms, floor.get(ref, -1) + 1))
            floor[ref] = point.ts_ms
        return point

    def _status(
        self,
        refs: list[MachineRef],
        online: bool,
        payload: pb.Payload,
        received_ms: int,
        floor: MutableMapping[MachineRef, int] | None,
    ) -> Decoded:
        ts = payload.timestamp if payload.HasField("timestamp") else received_ms
        points = [self._status_point(ref, online, ts, received_ms, floor) for ref in refs]
        return Decoded(encode_points(points), len(points))


class _Unknown(WireError):
    """A metric the births do not explain: answered with a rebirth request."""


def _with_seq(decoded: Decoded, ref: MachineRef, seq: int) -> Decoded:
    return Decoded(decoded.lines, decoded.points, decoded.touched, ref=ref, seq=seq)
