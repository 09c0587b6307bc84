"""Grafana's InfluxQL macros and template variables, expanded the way Grafana does it.

Grafana (InfluxDB data source, InfluxQL mode) rewrites a raw query before sending it:

- ``$timeFilter`` → ``time >= <from>ms and time <= <to>ms``;
- ``$__interval`` → the bucket width for the panel (time range / max data points,
  rounded to a "nice" width, never below the panel's min interval), ``$__interval_ms``
  the same in milliseconds; ``$__from`` / ``$__to`` → epoch milliseconds;
- ``$var``, ``${var}``, ``[[var]]`` → the variable's value. For a variable that allows
  several values or "All", each value is regex-escaped and several become ``(a|b)``,
  which is why queries match them as ``=~ /^$var$/``.

Used by ``runhours dashboards check`` and the tests to run every panel's query for real.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

# Grafana's "nice" interval steps (rangeutil.roundInterval), smallest first.
_NICE_STEPS_MS = (
    10, 20, 50, 100, 200, 500,
    1_000, 2_000, 5_000, 10_000, 15_000, 20_000, 30_000,
    60_000, 120_000, 300_000, 600_000, 900_000, 1_200_000, 1_800_000,
    3_600_000, 7_200_000, 10_800_000, 21_600_000, 43_200_000,
    86_400_000, 604_800_000, 2_592_000_000, 31_536_000_000,
)  # fmt: skip

_DURATION = re.compile(r"^(\d+)(ms|s|m|h|d|w)$")
_UNIT_MS = {"ms": 1, "s": 1_000, "m": 60_000, "h": 3_600_000, "d": 86_400_000, "w": 604_800_000}
_REGEX_SPECIAL = re.compile(r"[\\^$*+?.()|\[\]{}/]")
_VARIABLE = re.compile(r"\$\{(\w+)\}|\[\[(\w+)\]\]|\$(\w+)")


@dataclass(frozen=True)
class Variable:
    """A template variable's current value(s) and whether it allows several."""

    values: tuple[str, ...]
    multi: bool = True  # multi-value or "include All": values are regex-escaped


def parse_duration(text: str) -> timedelta:
    """``"15s"``, ``"1m"``, ``"1h"`` … (Grafana interval syntax) as a timedelta."""
    match = _DURATION.match(text.strip())
    if not match:
        raise ValueError(f"{text!r} is not a duration like 30s, 1m, 1h or 1d")
    return timedelta(milliseconds=int(match.group(1)) * _UNIT_MS[match.group(2)])


def format_duration(delta: timedelta) -> str:
    """The largest whole unit: 60 s → ``"1m"``, 90 s → ``"90s"``, 1.5 s → ``"1500ms"``."""
    ms = round(delta.total_seconds() * 1000)
    for unit in ("w", "d", "h", "m", "s"):
        if ms % _UNIT_MS[unit] == 0 and ms >= _UNIT_MS[unit]:
            return f"{ms // _UNIT_MS[unit]}{unit}"
    return f"{ms}ms"


def grafana_interval(
    start: datetime, end: datetime, *, max_data_points: int = 1000, min_interval: str | None = None
) -> timedelta:
    """``$__interval`` for a panel: range / max data points, rounded up to a nice step."""
    raw_ms = max((end - start).total_seconds() * 1000 / max_data_points, 1)
    step = next((s for s in _NICE_STEPS_MS if s >= raw_ms), _NICE_STEPS_MS[-1])
    if min_interval:
        step = max(step, round(parse_duration(min_interval).total_seconds() * 1000))
    return timedelta(milliseconds=step)


def panel_range(time_from: str | None, start: datetime, end: datetime) -> tuple[datetime, datetime]:
    """The range a panel queries: the dashboard's, or its relative-time override.

    ``now/d`` is today so far, ``now/w``, ``now/M``, ``now/fQ`` this week (from Monday),
    month, quarter so far (UTC), ``6h``/``7d`` the last 6 hours / 7 days before ``end``
    (which plays "now").
    """
    if not time_from:
        return start, end
    if time_from == "now/d":
        return end.replace(hour=0, minute=0, second=0, microsecond=0), end
    midnight = end.replace(hour=0, minute=0, second=0, microsecond=0)
    if time_from == "now/M":
        return midnight.replace(day=1), end
    if time_from == "now/fQ":  # fiscal quarter; fiscal year = calendar year here
        return midnight.replace(month=(end.month - 1) // 3 * 3 + 1, day=1), end
    if time_from == "now/w":  # week starting Monday (the dashboards' week_start)
        return midnight - timedelta(days=end.weekday()), end
    return end - parse_duration(time_from.removeprefix("now-")), end


def _epoch_ms(ts: datetime) -> int:
    if ts.tzinfo is None:
        raise ValueError(f"naive datetime {ts!r}: use an aware UTC time")
    return round(ts.astimezone(UTC).timestamp() * 1000)


def escape_regex(value: str) -> str:
    """Grafana's escapeRegex: a backslash before each regex metacharacter and ``/``."""
    return _REGEX_SPECIAL.sub(lambda m: "\\" + m.group(0), value)


def format_variable(variable: Variable) -> str:
    if not variable.multi:
        return variable.values[0] if variable.values else ""
    escaped = [escape_regex(v) for v in variable.values]
    return escaped[0] if len(escaped) == 1 else "(" + "|".join(escaped) + ")"


def expand(
    query: str,
    *,
    start: datetime,
    end: datetime,
    interval: timedelta,
    variables: Mapping[str, Variable] | None = None,
) -> str:
    """``query`` as Grafana would send it to InfluxDB."""
    from_ms, to_ms = _epoch_ms(start), _epoch_ms(end)
    interval_ms = round(interval.total_seconds() * 1000)
    builtins = {
        "timeFilter": f"time >= {from_ms}ms and time <= {to_ms}ms",
        "__interval_ms": str(interval_ms),
        "__interval": format_duration(interval),
        "__from": str(from_ms),
        "__to": str(to_ms),
    }
    variables = variables or {}

    def substitute(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(2) or match.group(3)
        if name in builtins:
            return builtins[name]
        if name in variables:
            return format_variable(variables[name])
        return match.group(0)  # not ours (e.g. a regex's end anchor `$/`)

    return _VARIABLE.sub(substitute, query)


def all_values(options: Sequence[str]) -> Variable:
    """A variable with "All" selected: Grafana sends every option."""
    return Variable(tuple(options), multi=True)
