"""Payload models of the v1 wire contract, with their JSON encoding.

Times are timezone-aware UTC ``datetime`` values truncated to whole milliseconds
(the storage precision); on the wire they are epoch milliseconds (what we send) or
RFC 3339 strings with a zone (what we also accept).
"""

from __future__ import annotations

import json
import math
import re
import struct
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal, TypeVar

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictBool,
    StrictFloat,
    StrictInt,
    ValidationError,
    field_validator,
    model_validator,
)

from wire.errors import WireError
from wire.topics import ID_PATTERN, MachineRef, parse_topic

State = Literal["off", "idle", "running", "fault", "maintenance"]
STATES: tuple[State, ...] = ("off", "idle", "running", "fault", "maintenance")

VALUE_NAME = re.compile(r"[a-z][a-z0-9_]{0,63}")
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# What InfluxDB can store (int64 nanoseconds, minus its two reserved values), in whole ms:
# 1677-09-21T00:12:43.146Z … 2262-04-11T23:47:16.854Z. A sample outside is refused here,
# before any of its message is written.
MIN_TS_MS = -9_223_372_036_854
MAX_TS_MS = 9_223_372_036_854
MAX_SAMPLES = 100_000  # per message: a bound on what one message can make the ingest hold


def from_epoch_ms(ms: int) -> datetime:
    """Epoch milliseconds → aware UTC datetime (exact, no float rounding)."""
    return EPOCH + timedelta(milliseconds=ms)


def to_epoch_ms(ts: datetime) -> int:
    """Aware datetime → epoch milliseconds (floor)."""
    if ts.tzinfo is None:
        raise WireError(f"ts: naive timestamp (no zone): {ts.isoformat()}")
    return (ts - EPOCH) // timedelta(milliseconds=1)


def _parse_ts(value: Any) -> datetime:
    if isinstance(value, bool):
        raise ValueError("must be epoch milliseconds (integer) or an RFC 3339 string")
    if isinstance(value, int):
        if value < 0:
            raise ValueError(f"negative epoch milliseconds: {value}")
        return _storable(value, value)
    if isinstance(value, datetime):
        ts = value
    elif isinstance(value, str):
        try:
            ts = datetime.fromisoformat(value)
        except ValueError:
            raise ValueError(f"not an RFC 3339 timestamp: {value!r}") from None
    else:
        raise ValueError("must be epoch milliseconds (integer) or an RFC 3339 string")
    if ts.tzinfo is None or ts.utcoffset() is None:
        raise ValueError(f"naive timestamp (no zone): {value!r}")
    try:
        return _storable(to_epoch_ms(ts), value)
    except OverflowError:  # e.g. 0001-01-01T00:00:00+01:00 is before datetime.min in UTC
        raise ValueError(f"timestamp out of range: {value!r}") from None


def _storable(ms: int, value: Any) -> datetime:
    if not MIN_TS_MS <= ms <= MAX_TS_MS:
        raise ValueError(
            f"timestamp out of range: {value!r} (storable: 1677-09-21T00:12:43.146Z to "
            "2262-04-11T23:47:16.854Z)"
        )
    return from_epoch_ms(ms)


def shortest_float32(number: float) -> float:
    """The shortest decimal that is the same float32 (12.3 stays 12.3, not 12.300000190…): a
    device's float32 becomes the value a person wrote (Modbus registers, Sparkplug metrics)."""
    for digits in range(1, 10):
        candidate = float(f"{number:.{digits}g}")
        if struct.pack(">f", candidate) == struct.pack(">f", number):
            return candidate
    return number


Timestamp = Annotated[datetime, BeforeValidator(_parse_ts)]
Number = StrictInt | StrictFloat


def _check_names(mapping: dict[str, float], what: str) -> dict[str, float]:
    out: dict[str, float] = {}
    for name, number in mapping.items():
        if not VALUE_NAME.fullmatch(name):
            raise ValueError(f"{what} name {name!r} must match [a-z][a-z0-9_]{{0,63}}")
        try:
            out[name] = float(number)
        except OverflowError:  # an integer beyond a float's range
            raise ValueError(f"{what} {name!r} is out of a float's range") from None
        if not math.isfinite(out[name]):
            raise ValueError(f"{what} {name!r} is not a finite number: {number}")
    return out


class Sample(BaseModel):
    """One reading of a machine at one instant."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    ts: Timestamp
    state: State | None = None
    values: dict[str, Number] = Field(default_factory=dict)

    @field_validator("values")
    @classmethod
    def _values(cls, values: dict[str, float]) -> dict[str, float]:
        return _check_names(values, "value")

    @model_validator(mode="after")
    def _not_empty(self) -> Sample:
        if self.state is None and not self.values:
            raise ValueError("a sample needs a state or at least one value")
        return self

    @property
    def ts_ms(self) -> int:
        return to_epoch_ms(self.ts)


class Telemetry(BaseModel):
    """A batch of samples from one machine, published on its telemetry topic."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    machine: str
    seq: StrictInt = Field(ge=0)
    samples: list[Sample] = Field(min_length=1, max_length=MAX_SAMPLES)
    counters: dict[str, Number] = Field(default_factory=dict)
    historical: StrictBool = False
    # v1 addition: samples this agent put into messages before this one, so that
    # offset[seq + 1] == offset[seq] + len(samples[seq]) and a lost message's samples
    # are known exactly (the ingest's gap reports).
    offset: StrictInt | None = Field(default=None, ge=0)

    @field_validator("machine")
    @classmethod
    def _machine(cls, machine: str) -> str:
        if not ID_PATTERN.fullmatch(machine):
            raise ValueError(f"{machine!r} is not a valid id (allowed: [A-Za-z0-9_.-]{{1,64}})")
        return machine

    @field_validator("counters")
    @classmethod
    def _counters(cls, counters: dict[str, float]) -> dict[str, float]:
        return _check_names(counters, "counter")


class Status(BaseModel):
    """Retained presence of an edge agent; its MQTT will says ``online: false``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    online: StrictBool
    ts: Timestamp
    # Optional edge-buffer health (v1 additions): samples waiting, samples dropped so far.
    buffered: StrictInt | None = Field(default=None, ge=0)
    dropped_total: StrictInt | None = Field(default=None, ge=0)
    # v1 additions: every telemetry message with a smaller seq, and the samples before this
    # offset, were acknowledged by the broker (the ingest detects a lost tail with them).
    delivered_seq: StrictInt | None = Field(default=None, ge=0)
    delivered_offset: StrictInt | None = Field(default=None, ge=0)


class IngestState(BaseModel):
    """Retained state of one ingest worker on ``runhours/v1/ingest/{worker}/state``.

    Published ``online: true`` once the worker's subscriptions are acknowledged; its MQTT
    will, and a graceful stop, publish ``online: false`` with the same ``ts`` (the time the
    connection was opened), as Sparkplug 3.0's primary host STATE does: a receiver keeps,
    per worker, only the state with the newest ``ts`` (equal wins: offline after online).
    ``site`` is the site the worker subscribes to, ``+`` for every site.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    online: StrictBool
    ts: Timestamp
    site: str = "+"

    @field_validator("site")
    @classmethod
    def _site(cls, site: str) -> str:
        if site != "+" and not ID_PATTERN.fullmatch(site):
            raise ValueError(f"{site!r} is not '+' or a valid id")
        return site

    def serves(self, site: str) -> bool:
        """Online and subscribed to ``site``'s telemetry."""
        return self.online and self.site in ("+", site)


def _describe(error: ValidationError) -> str:
    parts = []
    for item in error.errors():
        loc = ".".join(str(p) for p in item["loc"]) or "payload"
        msg = item["msg"].removeprefix("Value error, ")
        parts.append(f"{loc}: {msg}")
    return "; ".join(parts)


M = TypeVar("M", bound=BaseModel)


def _load_json(payload: bytes | str) -> Any:
    try:
        return json.loads(payload)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise WireError(f"payload: malformed JSON: {exc}") from None


def decode_telemetry(topic: str, payload: bytes | str) -> tuple[MachineRef, Telemetry]:
    """Validate a received telemetry message; raise ``WireError`` saying what is wrong."""
    ref = parse_topic(topic, "telemetry")
    data = _load_json(payload)
    if not isinstance(data, dict):
        raise WireError(f"payload: must be a JSON object, got {type(data).__name__}")
    message = _validated(Telemetry, data)
    if message.machine != ref.machine:
        raise WireError(
            f"machine: payload says {message.machine!r} but the topic says {ref.machine!r}"
        )
    return ref, message


def _validated(model: type[M], data: Any) -> M:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise WireError(_describe(exc)) from None


def decode_status(payload: bytes | str) -> Status:
    return _validated(Status, _load_json(payload))


def _sample_json(sample: Sample) -> dict[str, Any]:
    out: dict[str, Any] = {"ts": sample.ts_ms}
    if sample.state is not None:
        out["state"] = sample.state
    if sample.values:
        out["values"] = sample.values
    return out


def encode_sample(sample: Sample) -> bytes:
    """One sample exactly as it appears inside ``encode_telemetry``'s ``samples`` list.

    Edge buffers store samples in this form, so a batch is published without re-encoding.
    """
    return json.dumps(_sample_json(sample), separators=(",", ":"), allow_nan=False).encode()


def encode_telemetry(message: Telemetry) -> bytes:
    """Compact JSON with epoch-millisecond times, the form our agents publish."""
    body: dict[str, Any] = {
        "machine": message.machine,
        "seq": message.seq,
        "samples": [_sample_json(s) for s in message.samples],
    }
    if message.counters:
        body["counters"] = message.counters
    if message.historical:
        body["historical"] = True
    if message.offset is not None:
        body["offset"] = message.offset
    return json.dumps(body, separators=(",", ":"), allow_nan=False).encode()


def encode_status(status: Status) -> bytes:
    body: dict[str, Any] = {"online": status.online, "ts": to_epoch_ms(status.ts)}
    if status.buffered is not None:
        body["buffered"] = status.buffered
    if status.dropped_total is not None:
        body["dropped_total"] = status.dropped_total
    if status.delivered_seq is not None:
        body["delivered_seq"] = status.delivered_seq
    if status.delivered_offset is not None:
        body["delivered_offset"] = status.delivered_offset
    return json.dumps(body, separators=(",", ":")).encode()


def encode_ingest_state(state: IngestState) -> bytes:
    body = {"online": state.online, "ts": to_epoch_ms(state.ts), "site": state.site}
    return json.dumps(body, separators=(",", ":")).encode()


def decode_ingest_state(payload: bytes | str) -> IngestState:
    return _validated(IngestState, _load_json(payload))
