"""Counter-based run time from the machine's own hour meter (``run_seconds_total``).

Pure functions over numpy arrays, in integer milliseconds so that sums are exact and the
hourly rollups add up to exactly what a direct computation over the period gives.

Semantics (docs/billing.md): each reading's *delta* is its value minus the previous
reading's value; a decrease is a meter reset, and the new value counts from 0 (the delta
is the new value). A delta belongs to the instant of the reading that reports it, so the
counter seconds of a period are the deltas of the readings inside it: the meter reading
at the period's last reading minus the one at the last reading before the period. The
very first reading of a machine only sets the baseline. A period without any reading
has no counter figure (None), as opposed to a meter that stood still (0).
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

import numpy as np
import numpy.typing as npt

IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]


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


def to_counter_ms(values: npt.ArrayLike) -> IntArray:
    """Counter readings in seconds (floats) → integer milliseconds."""
    return np.rint(np.asarray(values, dtype=np.float64) * 1000.0).astype(np.int64)


def counter_deltas(values_ms: IntArray, previous_ms: int | None) -> tuple[IntArray, BoolArray]:
    """Per reading: the delta it reports and whether it is a reset.

    ``previous_ms`` is the reading just before the first one (None: the first reading only
    sets the baseline and reports 0).
    """
    values_ms = np.asarray(values_ms, dtype=np.int64)
    if values_ms.size == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.bool_)
    before = np.empty_like(values_ms)
    before[1:] = values_ms[:-1]
    before[0] = values_ms[0] if previous_ms is None else previous_ms
    deltas = values_ms - before
    resets = deltas < 0
    deltas = np.where(resets, values_ms, deltas)
    return deltas, resets


def counter_ms_by_bucket(
    ts_ms: IntArray, values_ms: IntArray, previous_ms: int | None, edges_ms: IntArray
) -> tuple[IntArray, BoolArray, BoolArray]:
    """Counter milliseconds per bucket ``[edges[k], edges[k+1])``.

    ``ts_ms``/``values_ms`` are the readings in time order and ``previous_ms`` the reading
    just before the first of them (None: none). Returns (delta ms, any reset, defined) per
    bucket; a bucket's counter is *defined* when at least one reading falls inside it
    (otherwise the machine reported no hour meter there, and the delta is 0).
    """
    edges_ms = np.asarray(edges_ms, dtype=np.int64)
    ts_ms = np.asarray(ts_ms, dtype=np.int64)
    n = max(edges_ms.size - 1, 0)
    deltas, resets = counter_deltas(values_ms, previous_ms)
    slot = np.searchsorted(edges_ms, ts_ms, side="right") - 1
    inside = (slot >= 0) & (slot < n)
    sums = np.zeros(n, np.int64)
    any_reset = np.zeros(n, np.bool_)
    defined = np.zeros(n, np.bool_)
    np.add.at(sums, slot[inside], deltas[inside])
    np.logical_or.at(any_reset, slot[inside], resets[inside])
    defined[slot[inside]] = True
    return sums, any_reset, defined
