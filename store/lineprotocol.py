"""InfluxDB line protocol encoding (1.x rules), escaping everything a name can carry.

No id or value name can inject a tag or a field: commas, spaces and equals signs are
escaped; a newline, which the protocol cannot escape, is rejected.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import NamedTuple

FieldValue = float | str | bool


class Point(NamedTuple):
    """One point: measurement, tags, fields and a timestamp in epoch milliseconds."""

    measurement: str
    tags: Mapping[str, str]
    fields: Mapping[str, FieldValue]
    ts_ms: int


_MEASUREMENT = str.maketrans({",": r"\,", " ": r"\ ", "\\": "\\\\"})
_KEY = str.maketrans({",": r"\,", " ": r"\ ", "=": r"\=", "\\": "\\\\"})


def _check(text: str, what: str) -> str:
    if not text or "\n" in text or "\r" in text:
        raise ValueError(f"{what} {text!r} is empty or contains a newline")
    return text


def escape_key(text: str) -> str:
    """Escape a tag key, tag value or field key."""
    return _check(text, "name").translate(_KEY)


def _field(value: FieldValue) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        if "\n" in value:
            value = value.replace("\n", " ")
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    number = float(value)
    if not math.isfinite(number):
        raise ValueError(f"field value {value!r} is not finite")
    # Always a float literal (never `1i`): a field's type is fixed by its first write.
    return repr(number)


def encode_point(point: Point) -> str:
    if not point.fields:
        raise ValueError("a point needs at least one field")
    head = _check(point.measurement, "measurement").translate(_MEASUREMENT)
    tags = "".join(
        f",{escape_key(k)}={escape_key(v)}" for k, v in sorted(point.tags.items()) if v != ""
    )
    fields = ",".join(f"{escape_key(k)}={_field(v)}" for k, v in point.fields.items())
    return f"{head}{tags} {fields} {int(point.ts_ms)}"


def encode_points(points: Iterable[Point]) -> bytes:
    return "\n".join(encode_point(p) for p in points).encode()
