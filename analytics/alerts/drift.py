"""The maths of drift detection: reference statistics, CUSUM, and trend extrapolation.

Pure functions over plain lists, so an evaluator's memory stays JSON (it is saved in
SQLite between cycles):

- a reference is learnt with Welford's running mean and variance, ``[n, mean, m2]``;
- the CUSUM (Page's test) sums the deviation beyond an allowance ``k`` over time, in
  share × hours, and is held between 0 and ``h``: it reaches ``h`` when the value has
  stayed high long enough, and drains back to 0 at ``k`` per hour once it is normal;
- the trend is a least-squares line through hourly means of the recent past (at least
  three hours); "at this rate" is that line extended to the limit.
"""

from __future__ import annotations

import math

Stats = list[float]  # [n, mean, m2] (Welford)
Buckets = list[list[float]]  # [[hour start ms, sum, count, sum of ms into the hour], ...]

HOUR_MS = 3_600_000
MIN_TREND_POINTS = 3  # hourly means needed before a trend line is drawn


def learn(stats: Stats | None, x: float) -> Stats:
    """``stats`` updated with one more observation (a new list; Welford's algorithm)."""
    n, mean, m2 = stats if stats is not None else (0.0, 0.0, 0.0)
    n += 1
    delta = x - mean
    mean += delta / n
    return [n, mean, m2 + delta * (x - mean)]


def std(stats: Stats) -> float:
    """The (population) standard deviation of what ``stats`` learnt."""
    n, _, m2 = stats
    return math.sqrt(max(m2, 0.0) / n) if n else 0.0


def cusum(s: float, deviation: float, k: float, h: float, hours: float) -> float:
    """One CUSUM step: ``deviation`` (a share) beyond ``k`` for ``hours``, kept in [0, h]."""
    return min(h, max(0.0, s + (deviation - k) * hours))


def record(buckets: Buckets, t_ms: int, value: float, keep_ms: int) -> None:
    """Add ``value`` observed at ``t_ms`` to its hour; forget hours older than ``keep_ms``."""
    hour = t_ms - t_ms % HOUR_MS
    if buckets and buckets[-1][0] == hour:
        last = buckets[-1]
        last[1] += value
        last[2] += 1
        last[3] += t_ms - hour
    else:
        buckets.append([hour, value, 1, t_ms - hour])
    while buckets and buckets[0][0] + HOUR_MS <= t_ms - keep_ms:
        buckets.pop(0)


def trend(buckets: Buckets, t_ms: int) -> tuple[float, float] | None:
    """The fitted level at ``t_ms`` and the slope per hour, or None with too few hours.

    Each hour counts once (its mean, at the mean time of its observations), however many
    observations it holds: a busy hour does not outweigh a quiet one.
    """
    if len(buckets) < MIN_TREND_POINTS:
        return None
    xs = [(b[0] + b[3] / b[2] - t_ms) / HOUR_MS for b in buckets]
    ys = [b[1] / b[2] for b in buckets]
    n = len(xs)
    mx, my = sum(xs) / n, sum(ys) / n
    sxx = sum((x - mx) ** 2 for x in xs)
    if sxx <= 0:
        return None
    slope = sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / sxx
    return my - slope * mx, slope


def hours_to(limit: float, level: float, slope: float, up: bool) -> float | None:
    """Hours until a line at ``level`` rising ``slope`` per hour reaches ``limit``.

    ``up``: the limit is crossed from below (else from above). 0 when the level is already
    past it; None when the line is not heading there.
    """
    gap = limit - level if up else level - limit
    rate = slope if up else -slope
    if gap <= 0:
        return 0.0
    return gap / rate if rate > 0 else None


def describe_hours(hours: float) -> str:
    """A human duration for an estimate: "less than an hour", "about 26 h", "about 4 days"."""
    if hours < 1:
        return "less than an hour"
    if hours < 48:
        return f"about {round(hours)} h"
    return f"about {round(hours / 24)} days"
