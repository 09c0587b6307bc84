"""The common case, fast: a telemetry message as our edge agents send it, straight to bytes.

``fast_telemetry`` takes the parsed JSON of a message and returns its line protocol only
when the message is plainly valid (epoch-millisecond timestamps, known states, finite
numbers, names that need no escaping); anything else returns ``None`` and goes the general
way (``wire.decode_telemetry`` + ``ingest.points``), which accepts the same messages,
writes the same bytes and says exactly what is wrong with the others. tests/ingest/test_fuzz.py
checks both ways agree, byte for byte, on generated messages.

Why it is safe to skip escaping: an accepted message's ids match ``[A-Za-z0-9_.-]`` (the
topic was parsed) and its names ``[a-z][a-z0-9_]*``, so nothing in them needs escaping.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from typing import Any

from ingest.points import HOUR_MS, RESERVED_FIELDS, MachineHour
from store.schema import FIELD_STATE, TELEMETRY
from wire import MAX_SAMPLES, STATES, MachineRef
from wire.payloads import MAX_TS_MS

_NAME = re.compile(r"[a-z][a-z0-9_]{0,63}")
_MESSAGE_KEYS = frozenset({"machine", "seq", "samples", "counters", "historical", "offset"})
_SAMPLE_KEYS = frozenset({"ts", "state", "values"})
_STATE_FIELDS = {state: f',{FIELD_STATE}="{state}"' for state in STATES}
_known_names: set[str] = set()  # names already checked (a plant has a few dozen)


def _name_ok(name: Any) -> bool:
    if name in _known_names:
        return True
    if type(name) is str and _NAME.fullmatch(name) and name not in RESERVED_FIELDS:
        _known_names.add(name)
        return True
    return False


def _fields(values: Any) -> str | None:
    """``name=1.0,other=2.5`` of a values/counters object, or None when not plainly valid."""
    if type(values) is not dict:
        return None
    parts = []
    for name, value in values.items():
        kind = type(value)
        if kind is float:
            if not math.isfinite(value):
                return None
        elif kind is int:
            try:
                value = float(value)
            except OverflowError:
                return None
        else:
            return None
        if not _name_ok(name):
            return None
        parts.append(f"{name}={value!r}")
    return ",".join(parts)


class Fast:
    """A message encoded the fast way: its lines, points, machine-hours and sequence."""

    __slots__ = ("lines", "offset", "points", "seq", "touched")

    def __init__(
        self, lines: bytes, points: int, touched: Counter[MachineHour], seq: int, offset: int | None
    ) -> None:
        self.lines, self.points, self.touched = lines, points, touched
        self.seq, self.offset = seq, offset


def fast_telemetry(ref: MachineRef, data: Any) -> Fast | None:
    """The message's line protocol, or None: take the general way."""
    if type(data) is not dict or not _MESSAGE_KEYS.issuperset(data):
        return None
    seq, offset, samples = data.get("seq"), data.get("offset"), data.get("samples")
    if data.get("machine") != ref.machine or type(seq) is not int or seq < 0:
        return None
    if offset is not None and (type(offset) is not int or offset < 0):
        return None
    if "historical" in data and type(data["historical"]) is not bool:
        return None
    if type(samples) is not list or not 0 < len(samples) <= MAX_SAMPLES:
        return None
    counters = data.get("counters", {})
    if type(counters) is not dict:
        return None
    tail = ""
    if counters:
        tail = _fields(counters) or ""
        if not tail:
            return None
        tail = "," + tail
    prefix = f"{TELEMETRY},line={ref.line},machine={ref.machine},site={ref.site} "
    lines = []
    hours: dict[int, int] = {}
    last = len(samples) - 1
    for index, sample in enumerate(samples):
        if type(sample) is not dict or not _SAMPLE_KEYS.issuperset(sample):
            return None
        ts, state, values = sample.get("ts"), sample.get("state"), sample.get("values", {})
        if type(ts) is not int or not 0 <= ts <= MAX_TS_MS:
            return None
        fields = _fields(values)
        if fields is None:
            return None
        if state is not None:
            marker = _STATE_FIELDS.get(state)
            if marker is None:
                return None
            fields = fields + marker if fields else marker[1:]
        elif not fields:
            return None  # a sample needs a state or a value
        if index == last and tail:
            if set(counters) & set(values):
                return None  # a counter named like a value: the general way says so
            fields += tail if fields else tail[1:]
        lines.append(f"{prefix}{fields} {ts}")
        hour = ts - ts % HOUR_MS
        hours[hour] = hours.get(hour, 0) + 1
    touched: Counter[MachineHour] = Counter({(ref, hour): n for hour, n in hours.items()})
    return Fast("\n".join(lines).encode(), len(lines), touched, seq, offset)
