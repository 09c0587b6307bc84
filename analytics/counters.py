"""Counter-based run time from the machine's own hour meter (``run_seconds_total``).

Pure functions over numpy arrays, in integer milliseconds so that sums are exact and the
hourly rollups add up to exactly what a direct computation over the period gives.

Semantics (docs/billing.md "Hour meter"): each reading is judged against the reading
just before it, by the rules of :class:`CounterRules`:

- an advance is billed, but never more than the time elapsed between the two readings
  (a meter cannot count more running time than passed); an advance beyond that by more
  than ``JUMP_SLACK_MS`` is a *jump* (the excess is not billed);
- a drop to near zero (``reset_below_ms``) is a *reset*: the new value counts from 0;
- with a register ``modulus_ms``, a drop that is a plausible wrap-around is a *wrap*:
  the advance is the new value + modulus − the old one;
- any other drop (a stale value restored after a power cut, jitter) is a *glitch*:
  nothing is billed, and the next reading counts from the restored value.

A delta belongs to the instant of the reading that reports it, so a period's counter
seconds are the deltas of its readings, and each depends only on that reading and the
one before it. The very first reading of a machine only sets the baseline. A period
without any reading has no counter figure (None), as opposed to a meter that stood
still (0). Resets, wraps, glitches and jumps are *anomalies*: counted, and listed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, tzinfo
from decimal import Decimal
from typing import Literal, NamedTuple

import numpy as np
import numpy.typing as npt

IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]

AnomalyKind = Literal["reset", "wrap", "glitch", "jump"]
ANOMALY_KINDS: tuple[AnomalyKind, ...] = ("reset", "wrap", "glitch", "jump")
_KIND_OF: dict[str, AnomalyKind] = {kind: kind for kind in ANOMALY_KINDS}
_OK = -1  # kind code of an ordinary reading
JUMP_SLACK_MS = 1_000  # an advance beyond the elapsed time by more than this is a jump
DEFAULT_RESET_BELOW_MS = 600_000  # a drop to at most 10 min of meter time is a reset
EVENT_LIMIT = 20  # anomalies kept per bucket (the counts are always exact)


@dataclass(frozen=True)
class CounterTolerance:
    """How far counter seconds may stray from state-based running seconds before a flag.

    Allowed difference = ``relative`` × running seconds + ``absolute_s`` (default 1% + 60 s).
    """

    relative: Decimal = Decimal("0.01")
    absolute_s: Decimal = Decimal("60")

    def allowed(self, running_s: float) -> float:
        return float(self.relative) * running_s + float(self.absolute_s)


def counter_mismatch(
    counter_s: float | None, running_s: float, tolerance: CounterTolerance
) -> bool:
    """True when the hour meter and the state-based running time disagree beyond tolerance."""
    if counter_s is None:
        return False
    return abs(counter_s - running_s) > tolerance.allowed(running_s)


@dataclass(frozen=True)
class CounterRules:
    """How a drop of the hour meter is read: a reset only near zero, a wrap at ``modulus_ms``.

    The hourly rollups are computed with the defaults; a contract with other rules is
    metered from raw samples (docs/billing.md).
    """

    reset_below_ms: int = DEFAULT_RESET_BELOW_MS
    modulus_ms: int | None = None  # e.g. 65_536_000 for a 16-bit register of seconds

    @property
    def is_default(self) -> bool:
        return self == CounterRules()


class CounterEvent(NamedTuple):
    """One anomaly: the reading at ``ts_ms`` went from ``before_ms`` to ``after_ms``."""

    kind: AnomalyKind
    ts_ms: int
    before_ms: int
    after_ms: int
    billed_ms: int

    def describe(self, tz: tzinfo = UTC) -> str:
        """One line for people: ``2026-10-06T09:30:00+02:00 glitch: meter 36000010.000 s →
        36000009.999 s, billed 0.000 s``."""
        at = datetime.fromtimestamp(self.ts_ms / 1000, UTC).astimezone(tz)
        return (
            f"{at.isoformat(timespec='milliseconds' if self.ts_ms % 1000 else 'seconds')} "
            f"{self.kind}: meter {seconds_text(self.before_ms)} s → "
            f"{seconds_text(self.after_ms)} s, billed {seconds_text(self.billed_ms)} s"
        )


def seconds_text(ms: int) -> str:
    """Milliseconds as exact seconds text: 36000009999 → ``36000009.999``."""
    sign = "-" if ms < 0 else ""
    whole, rest = divmod(abs(int(ms)), 1000)
    return f"{sign}{whole}.{rest:03d}"


def to_counter_ms(values: npt.ArrayLike) -> IntArray:
    """Counter readings in seconds (floats) → integer milliseconds."""
    return np.rint(np.asarray(values, dtype=np.float64) * 1000.0).astype(np.int64)


@dataclass(frozen=True)
class Readings:
    """Per reading: the milliseconds it bills, its anomaly kind (index into
    ``ANOMALY_KINDS``, -1 for none) and the value before it."""

    billed_ms: IntArray
    kind: npt.NDArray[np.int8]
    before_ms: IntArray


def judge_readings(
    ts_ms: IntArray,
    values_ms: IntArray,
    previous: tuple[int, int] | None,
    rules: CounterRules = CounterRules(),
) -> Readings:
    """Apply the counter rules to readings in time order.

    ``previous`` is ``(ts_ms, value_ms)`` of the reading just before the first one
    (None: the first reading only sets the baseline and bills 0).
    """
    ts_ms = np.asarray(ts_ms, dtype=np.int64)
    values_ms = np.asarray(values_ms, dtype=np.int64)
    n = values_ms.size
    if n == 0:
        return Readings(np.zeros(0, np.int64), np.zeros(0, np.int8), np.zeros(0, np.int64))
    before = np.empty_like(values_ms)
    before_ts = np.empty_like(ts_ms)
    before[1:], before_ts[1:] = values_ms[:-1], ts_ms[:-1]
    before_ts[0], before[0] = previous if previous is not None else (ts_ms[0], values_ms[0])
    elapsed = np.maximum(ts_ms - before_ts, 0)
    advance = values_ms - before
    kind = np.full(n, _OK, np.int8)
    billed = np.zeros(n, np.int64)

    forward = advance >= 0
    billed[forward] = np.minimum(advance, elapsed)[forward]
    kind[forward & (advance - elapsed > JUMP_SLACK_MS)] = ANOMALY_KINDS.index("jump")

    drop = ~forward
    if rules.modulus_ms is not None:
        wrapped = advance + rules.modulus_ms
        wrap = drop & (wrapped >= 0) & (wrapped <= elapsed + JUMP_SLACK_MS)
        billed[wrap] = np.minimum(wrapped, elapsed)[wrap]
        kind[wrap] = ANOMALY_KINDS.index("wrap")
        drop &= ~wrap
    reset = drop & (values_ms <= rules.reset_below_ms)
    billed[reset] = np.clip(np.minimum(values_ms, elapsed), 0, None)[reset]
    kind[reset] = ANOMALY_KINDS.index("reset")
    kind[drop & ~reset] = ANOMALY_KINDS.index("glitch")  # billed stays 0
    return Readings(billed, kind, before)


@dataclass(frozen=True)
class CounterBuckets:
    """The hour meter per bucket: billed ms, whether any reading fell in the bucket
    (``defined``), anomaly counts (columns follow ``ANOMALY_KINDS``) and the first
    ``EVENT_LIMIT`` anomalies of each bucket."""

    billed_ms: IntArray
    defined: BoolArray
    counts: IntArray
    events: tuple[tuple[CounterEvent, ...], ...]


def counter_by_bucket(
    ts_ms: IntArray,
    values_ms: IntArray,
    previous: tuple[int, int] | None,
    edges_ms: IntArray,
    rules: CounterRules = CounterRules(),
) -> CounterBuckets:
    """The hour meter per bucket ``[edges[k], edges[k+1])`` from readings in time order.

    ``previous`` is ``(ts_ms, value_ms)`` of the reading just before the first one. A
    bucket's counter is *defined* when at least one reading falls inside it (otherwise
    the machine reported no hour meter there, and the delta is 0).
    """
    edges_ms = np.asarray(edges_ms, dtype=np.int64)
    ts_ms = np.asarray(ts_ms, dtype=np.int64)
    n = max(edges_ms.size - 1, 0)
    judged = judge_readings(ts_ms, values_ms, previous, rules)
    slot = np.searchsorted(edges_ms, ts_ms, side="right") - 1
    inside = (slot >= 0) & (slot < n)
    billed = np.zeros(n, np.int64)
    np.add.at(billed, slot[inside], judged.billed_ms[inside])
    defined = np.zeros(n, np.bool_)
    defined[slot[inside]] = True
    counts = np.zeros((n, len(ANOMALY_KINDS)), np.int64)
    odd = inside & (judged.kind != _OK)
    np.add.at(counts, (slot[odd], judged.kind[odd]), 1)
    events: list[list[CounterEvent]] = [[] for _ in range(n)]
    for i in np.flatnonzero(odd).tolist():
        bucket = events[int(slot[i])]
        if len(bucket) < EVENT_LIMIT:
            bucket.append(
                CounterEvent(
                    ANOMALY_KINDS[int(judged.kind[i])],
                    int(ts_ms[i]),
                    int(judged.before_ms[i]),
                    int(np.asarray(values_ms)[i]),
                    int(judged.billed_ms[i]),
                )
            )
    return CounterBuckets(billed, defined, counts, tuple(tuple(b) for b in events))


def anomaly_counts(counts: Sequence[int] | IntArray) -> dict[AnomalyKind, int]:
    """A row of anomaly counts as ``{kind: n}``, kinds with none left out."""
    return {kind: int(c) for kind, c in zip(ANOMALY_KINDS, counts, strict=True) if int(c)}


def describe_counts(counts: dict[AnomalyKind, int]) -> str:
    """``1 reset, 2 glitches``."""
    plural = {"reset": "resets", "wrap": "wraps", "glitch": "glitches", "jump": "jumps"}
    return ", ".join(f"{n} {kind if n == 1 else plural[kind]}" for kind, n in counts.items())


def list_anomalies(
    events: Sequence[CounterEvent], counts: dict[AnomalyKind, int], tz: tzinfo, hint: str = ""
) -> tuple[str, ...]:
    """The anomalies for people: each listed event, then how many more were counted."""
    texts = [event.describe(tz) for event in events]
    more = sum(counts.values()) - len(texts)
    if more > 0:
        texts.append(f"… and {more} more{hint}")
    return tuple(texts)


# -- the events of an hour, as the rollups store them -----------------------------------------


def encode_events(events: Sequence[CounterEvent]) -> str:
    """``kind ts before after billed`` per event, ``;``-separated (``usage_hourly``)."""
    return ";".join(" ".join((e.kind, *(str(int(v)) for v in e[1:]))) for e in events)


def decode_events(text: str | None) -> tuple[CounterEvent, ...]:
    """The inverse of :func:`encode_events`."""
    out = []
    for item in (text or "").split(";"):
        if not item:
            continue
        name, *numbers = item.split(" ")
        kind = _KIND_OF.get(name)
        if kind is None or len(numbers) != 4:
            raise ValueError(f"counter event {item!r} not understood")
        ts, before, after, billed = (int(v) for v in numbers)
        out.append(CounterEvent(kind, ts, before, after, billed))
    return tuple(out)
