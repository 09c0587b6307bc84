"""Sparkplug B (3.0): topic names, the primary host's STATE, metric values, rebirth requests.

The ingest also accepts Sparkplug B edge nodes (``ingest/sparkplug.py`` maps them onto the
v1 schema). Payloads are protobuf (``wire/sparkplug_b.proto``, compiled into
``sparkplug_b_pb2``); STATE is JSON.

- ``spBv1.0/{group}/{NBIRTH|NDEATH|NDATA|NCMD}/{edge node}``
- ``spBv1.0/{group}/{DBIRTH|DDEATH|DDATA|DCMD}/{edge node}/{device}``
- ``spBv1.0/STATE/{host id}``: retained ``{"online": bool, "timestamp": ms}``, QoS 1, the
  host's will says offline with the same timestamp.
"""

from __future__ import annotations

import json
from typing import Literal, NamedTuple

from wire import sparkplug_b_pb2 as pb
from wire.errors import WireError
from wire.payloads import shortest_float32

NAMESPACE = "spBv1.0"
MessageType = Literal[
    "NBIRTH", "NDEATH", "NDATA", "NCMD", "DBIRTH", "DDEATH", "DDATA", "DCMD", "STATE"
]
NODE_TYPES = frozenset({"NBIRTH", "NDEATH", "NDATA", "NCMD"})
DEVICE_TYPES = frozenset({"DBIRTH", "DDEATH", "DDATA", "DCMD"})
SEQ_MODULUS = 256  # seq counts 0…255 and wraps
BD_SEQ = "bdSeq"
REBIRTH = "Node Control/Rebirth"

Payload = pb.Payload
Metric = pb.Payload.Metric


class SparkplugTopic(NamedTuple):
    group: str
    type: MessageType
    node: str
    device: str | None = None

    def __str__(self) -> str:
        tail = "" if self.device is None else f"/{self.device}"
        return f"{NAMESPACE}/{self.group}/{self.type}/{self.node}{tail}"


def parse_sparkplug_topic(topic: str) -> SparkplugTopic:
    """Parse a Sparkplug B topic (not STATE); raise ``WireError`` naming the problem."""
    parts = topic.split("/")
    if len(parts) not in (4, 5) or parts[0] != NAMESPACE:
        raise WireError(f"topic: {topic!r} is not {NAMESPACE}/group/type/node[/device]")
    group, kind, node = parts[1], parts[2], parts[3]
    device = parts[4] if len(parts) == 5 else None
    if kind not in (DEVICE_TYPES if device is not None else NODE_TYPES):
        raise WireError(f"topic: {kind!r} is not a Sparkplug B message type here ({topic!r})")
    if not all((group, node, device if device is not None else "x")):
        raise WireError(f"topic: {topic!r} has an empty id")
    return SparkplugTopic(group, kind, node, device)  # type: ignore[arg-type]


def data_subscriptions(group: str = "+") -> list[str]:
    """Every node and device message of ``group`` (``+``: every group), STATE excluded."""
    return [f"{NAMESPACE}/{group}/+/+", f"{NAMESPACE}/{group}/+/+/+"]


def state_topic(host_id: str) -> str:
    return f"{NAMESPACE}/STATE/{host_id}"


def encode_state(online: bool, timestamp_ms: int) -> bytes:
    """The primary host's STATE (Sparkplug 3.0): birth, or death with the same timestamp."""
    return json.dumps({"online": online, "timestamp": timestamp_ms}, separators=(",", ":")).encode()


def decode_state(payload: bytes) -> tuple[bool, int]:
    try:
        body = json.loads(payload)
        online, timestamp = body["online"], body["timestamp"]
    except (ValueError, KeyError, TypeError):
        raise WireError('STATE: expected {"online": bool, "timestamp": ms}') from None
    if not isinstance(online, bool) or not isinstance(timestamp, int):
        raise WireError('STATE: expected {"online": bool, "timestamp": ms}')
    return online, timestamp


def rebirth_request(timestamp_ms: int) -> bytes:
    """An NCMD payload asking an edge node to publish its births again."""
    payload = Payload(timestamp=timestamp_ms)
    metric = payload.metrics.add()
    metric.name = REBIRTH
    metric.timestamp = timestamp_ms
    metric.datatype = pb.Boolean
    metric.boolean_value = True
    return bytes(payload.SerializeToString())


def decode_payload(raw: bytes) -> Payload:
    try:
        payload: Payload = Payload.FromString(raw)
    except Exception as exc:  # protobuf's DecodeError and friends
        raise WireError(f"payload: not a Sparkplug B protobuf payload: {exc}") from None
    return payload


_SIGNED_BITS: dict[int, int] = {pb.Int8: 8, pb.Int16: 16, pb.Int32: 32, pb.Int64: 64}
NUMERIC = frozenset(
    {pb.Int8, pb.Int16, pb.Int32, pb.Int64, pb.UInt8, pb.UInt16, pb.UInt32, pb.UInt64,
     pb.Float, pb.Double, pb.Boolean, pb.DateTime}
)  # fmt: skip
TEXT = frozenset({pb.String, pb.Text, pb.UUID})


def metric_value(metric: Metric, datatype: int) -> float | str | None:
    """The metric's value as a number (integers, floats, booleans as 0/1) or a string;
    ``None`` for a null metric. Raises ``WireError`` for a value the datatype cannot
    carry or a datatype runhours does not store (data sets, templates, bytes, files)."""
    if metric.is_null:
        return None
    field = metric.WhichOneof("value")
    if datatype in TEXT and field == "string_value":
        return metric.string_value
    if datatype not in NUMERIC:
        name = pb.DataType.Name(datatype) if datatype in pb.DataType.values() else datatype
        raise WireError(f"datatype {name} cannot be stored as a number or a state")
    if field == "boolean_value":
        return 1.0 if metric.boolean_value else 0.0
    if field == "float_value":
        return shortest_float32(metric.float_value)
    if field == "double_value":
        return metric.double_value
    if field in ("int_value", "long_value"):
        raw = metric.int_value if field == "int_value" else metric.long_value
        bits = _SIGNED_BITS.get(datatype)
        if bits is not None:  # signed: two's complement in an unsigned field
            raw &= (1 << bits) - 1
            if raw >= 1 << (bits - 1):
                raw -= 1 << bits
        return float(raw)
    raise WireError(f"no value of datatype {pb.DataType.Name(datatype)} (field {field})")
