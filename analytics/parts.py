"""Part counters (``parts_total``, ``parts_good_total``) as parts per planned window (pure).

A machine reports its counters with a telemetry message (on its last sample), so two
readings may lie minutes apart, on either side of a shift change or a break. The parts
counted between two readings were made while the machine *ran* between them: they are
shared out over the running time between the readings, in proportion, and each window of
planned production time gets its share (rounded to whole parts by the largest remainder,
so the shares add up exactly to what the counter advanced). Parts made while running
outside planned time count nowhere, like that running time itself. When the machine did
not run at all between two readings, the parts belong to where the later reading was
taken. Readings at a boundary (a day's end with nobody working) make the split exact.

A counter that goes down was reset (a new job, a controller restart): the new value is
the count since the reset.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from analytics.stops import ms_before

IntArray = npt.NDArray[np.int64]


def increments(values: IntArray) -> IntArray:
    """What each reading adds to the one before it (the first adds nothing); a drop is a
    reset, so the reading itself is the increment."""
    out = np.zeros(values.size, np.int64)
    if values.size > 1:
        step = np.diff(values)
        out[1:] = np.where(step >= 0, step, values[1:])
    return out


def _largest_remainder(total: int, weights: Sequence[int]) -> list[int]:
    """``total`` split in proportion to ``weights`` (sum > 0) into integers summing to it."""
    whole = sum(weights)
    exact = [total * w / whole for w in weights]
    shares = [int(x) for x in exact]
    order = sorted(range(len(weights)), key=lambda i: (-(exact[i] - shares[i]), i))
    for i in order[: total - sum(shares)]:
        shares[i] += 1
    return shares


def parts_per_window(
    ts_ms: IntArray,
    counts: IntArray,
    running: tuple[IntArray, IntArray],
    windows: Sequence[tuple[int, int]],
) -> IntArray:
    """Parts counted by the readings ``(ts_ms, counts)`` (sorted) made in each planned window.

    ``running`` tabulates the machine's running intervals (``Intervals.cumulative``);
    ``windows`` are sorted, disjoint ``[lo, hi)``.
    """
    out = np.zeros(len(windows), np.int64)
    if ts_ms.size < 2 or not windows:
        return out
    lows = np.asarray([w[0] for w in windows], np.int64)
    highs = np.asarray([w[1] for w in windows], np.int64)
    added = increments(counts)
    for i in np.flatnonzero(added > 0).tolist():
        a, b, n = int(ts_ms[i - 1]), int(ts_ms[i]), int(added[i])
        first = int(np.searchsorted(highs, a, side="right"))  # first window ending after a
        last = int(np.searchsorted(lows, b, side="left"))  # windows starting before b
        ran_lo, ran_hi = ms_before(running, np.asarray([a, b], np.int64)).tolist()
        if ran_hi == ran_lo:  # no running between the readings: where the reading was
            k = int(np.searchsorted(lows, b, side="left")) - 1
            if k >= 0 and b <= highs[k]:
                out[k] += n
            continue
        picked = list(range(first, last))
        edges = np.asarray(
            [[max(a, int(lows[k])), min(b, int(highs[k]))] for k in picked], np.int64
        ).reshape(-1, 2)
        ran = (ms_before(running, edges[:, 1]) - ms_before(running, edges[:, 0])).tolist()
        outside = (ran_hi - ran_lo) - sum(ran)
        shares = _largest_remainder(n, [*ran, outside])
        for k, share in zip(picked, shares, strict=False):
            out[k] += share
    return out
