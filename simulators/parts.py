"""Part counters: what a machine that makes parts counts, and when each part was made.

While running, a machine completes a part every *actual* cycle, its ideal cycle slowed by
a random 4-20 % per running period (worn tools, cautious feeds, a slower operator). The
first part of a period completes one cycle after the period starts; a cycle cut short by
the end of the period (a stop, the shift's end) yields no part. Each part is scrap with
probability ``SCRAP_RATE``. So over any stretch, performance (ideal cycle × parts / running
time) comes out near 85-95 % and quality near 97.5 %.

Two counters, as a machine's controller keeps them: ``parts_total`` and
``parts_good_total``, both monotonic and counting from a random start (a used machine).
A reading taken at ``ts`` counts the parts completed *before* ``ts``, so the difference
of two readings is exactly the parts made between them: the ground truth adds them up
per hour the same way (``PartCounter.per_hour``).
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

IntArray = npt.NDArray[np.int64]

HOUR_MS = 3_600_000
SLOWDOWN = (0.04, 0.20)  # actual cycle = ideal × (1 + uniform(SLOWDOWN)) per running period
SCRAP_RATE = 0.025
PARTS_TOTAL = "parts_total"
PARTS_GOOD_TOTAL = "parts_good_total"


class PartCounter:
    """The parts of one machine, per segment of its state process (appended in order)."""

    def __init__(self, ideal_cycle_s: float, rng: np.random.Generator) -> None:
        self.ideal_ms = round(ideal_cycle_s * 1000)
        self._rng = rng
        self.total_start = int(rng.integers(20_000, 400_000))
        self.good_start = self.total_start - int(rng.integers(200, 10_000))
        # Per segment: parts (total, good) completed before it, its cycle (0: not running),
        # how many parts it completes, and the indexes of its scrapped parts.
        self._total_before: list[int] = []
        self._good_before: list[int] = []
        self._start: list[int] = []
        self._cycle: list[int] = []
        self._count: list[int] = []
        self._scrap: list[IntArray] = []

    def add(self, begin: int, end: int, running: bool) -> None:
        """The next segment ``[begin, end)`` of the state process."""
        if self._count:
            total = self._total_before[-1] + self._count[-1]
            good = self._good_before[-1] + self._count[-1] - self._scrap[-1].size
        else:
            total = good = 0
        cycle = count = 0
        scrap = np.zeros(0, np.int64)
        if running:
            cycle = round(self.ideal_ms * (1.0 + float(self._rng.uniform(*SLOWDOWN))))
            count = max(0, (end - begin - 1) // cycle)  # completions strictly inside
            scrap = np.flatnonzero(self._rng.random(count) < SCRAP_RATE).astype(np.int64)
        self._total_before.append(total)
        self._good_before.append(good)
        self._start.append(begin)
        self._cycle.append(cycle)
        self._count.append(count)
        self._scrap.append(scrap)

    def counters(self, ts: IntArray, segment: IntArray) -> tuple[IntArray, IntArray]:
        """``parts_total`` and ``parts_good_total`` read at ``ts`` (each in ``segment``)."""
        total = np.empty(ts.size, np.int64)
        good = np.empty(ts.size, np.int64)
        for k in np.unique(segment).tolist():
            rows = segment == k
            done = np.zeros(int(rows.sum()), np.int64)
            if self._cycle[k]:  # parts k·cycle after the start, strictly before ts
                done = np.clip((ts[rows] - self._start[k] - 1) // self._cycle[k], 0, self._count[k])
            scrapped = np.searchsorted(self._scrap[k], done, side="left")
            total[rows] = self.total_start + self._total_before[k] + done
            good[rows] = self.good_start + self._good_before[k] + done - scrapped
        return total, good

    def per_hour(self, lo: int, hi: int) -> dict[int, tuple[int, int]]:
        """Parts (total, good) completed in ``[lo, hi)``, per UTC hour start (epoch ms)."""
        out: dict[int, tuple[int, int]] = {}
        for k, count in enumerate(self._count):
            if not count:
                continue
            times = self._start[k] + self._cycle[k] * np.arange(1, count + 1, dtype=np.int64)
            good = np.ones(count, np.bool_)
            good[self._scrap[k]] = False
            keep = (times >= lo) & (times < hi)
            if not keep.any():
                continue
            hours = times[keep] - times[keep] % HOUR_MS
            for hour, n, g in zip(*_grouped(hours, good[keep].astype(np.int64)), strict=True):
                total_, good_ = out.get(hour, (0, 0))
                out[hour] = (total_ + n, good_ + g)
        return out


def _grouped(keys: IntArray, flags: IntArray) -> tuple[list[int], list[int], list[int]]:
    """Per distinct key (sorted): how many rows, and the sum of ``flags``."""
    unique, inverse, counts = np.unique(keys, return_inverse=True, return_counts=True)
    sums = np.bincount(inverse, weights=flags, minlength=unique.size)
    return unique.tolist(), counts.tolist(), [int(s) for s in sums]
