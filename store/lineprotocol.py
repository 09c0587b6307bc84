"""InfluxDB line protocol encoding (1.x rules), escaping everything a name can carry.

No id or value name can inject a tag or a field: commas, spaces and equals signs are
escaped; a newline, which the protocol cannot escape in a name, is rejected, and so is a
backslash that would escape the character after it. String field values are quoted and
keep everything, newlines included.
"""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Iterable, Mapping
from typing import NamedTuple

FieldValue = float | str | bool


class Point(NamedTuple):
    """One point: measurement, tags, fields and a timestamp in epoch milliseconds."""

    measurement: str
    tags: Mapping[str, str]
    fields: Mapping[str, FieldValue]
    ts_ms: int


_MEASUREMENT = str.maketrans({",": r"\,", " ": r"\ "})
_KEY = str.maketrans({",": r"\,", " ": r"\ ", "=": r"\="})
# InfluxDB unescapes only a backslash before one of these (`\\` stays two backslashes), so a
# backslash is written as it is, except where it would escape what follows: refused there.
_UNSAFE_BACKSLASH = re.compile(r'\\(?=[, ="]|$)')


def _check(text: str, what: str) -> str:
    if not text or "\n" in text or "\r" in text:
        raise ValueError(f"{what} {text!r} is empty or contains a newline")
    if _UNSAFE_BACKSLASH.search(text):
        raise ValueError(
            f"{what} {text!r}: line protocol cannot carry a backslash before a comma, space, "
            "equals sign or quote, or at the end (InfluxDB reads it as an escape); rename it"
        )
    return text


@functools.lru_cache(maxsize=16384)
def escape_key(text: str) -> str:
    """Escape a tag key, tag value or field key (cached: a plant repeats a few thousand)."""
    return _check(text, "name").translate(_KEY)


@functools.lru_cache(maxsize=256)
def _measurement(text: str) -> str:
    return _check(text, "measurement").translate(_MEASUREMENT)


def _field(value: FieldValue) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):  # inside quotes a newline is fine; `\\` and `\"` unescape
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    number = float(value)
    if not math.isfinite(number):
        raise ValueError(f"field value {value!r} is not finite")
    # Always a float literal (never `1i`): a field's type is fixed by its first write.
    return repr(number)


def encode_point(point: Point) -> str:
    if not point.fields:
        raise ValueError("a point needs at least one field")
    head = _measurement(point.measurement)
    tags = "".join(
        f",{escape_key(k)}={escape_key(v)}" for k, v in sorted(point.tags.items()) if v != ""
    )
    fields = ",".join(f"{escape_key(k)}={_field(v)}" for k, v in point.fields.items())
    return f"{head}{tags} {fields} {int(point.ts_ms)}"


def encode_points(points: Iterable[Point]) -> bytes:
    return "\n".join(encode_point(p) for p in points).encode()


def ms_lines_as_ns(lines: bytes) -> bytes:
    """Lines encoded with millisecond timestamps, as nanosecond ones (to share one write
    with ns points). Each line ends with its timestamp, so six zeros go before every line
    break: valid for lines whose string fields hold no line break (``encode_points`` keeps
    them as they are), which the caller vouches for."""
    return lines.replace(b"\n", b"000000\n") + b"000000" if lines else b""
