"""Running time of machines, for service-interval rules, counted exactly as billing counts.

``running_intervals`` (inside an evaluation window, step by step) and
``running_seconds_since`` (since the last service, grown cycle by cycle) read the raw
samples the way the usage engine does (``analytics.usage.load_samples_by_id``, the same
``Samples`` as its ``load_samples``, for the whole fleet at once) and apply its step
semantics (``analytics.usage.effective_states``): a state holds until the next sample, at
most ``max_gap``, and value-only samples (heartbeats) carry it forward. So the run-hours an
alert reports are the run-hours on the invoice (tests/analytics/alerts/test_alerts_run_hours.py).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta

import numpy as np

from analytics.counters import IntArray
from analytics.usage import (
    CARRY_HORIZON,
    DEFAULT_MAX_GAP,
    STATE_CODE,
    Int8Array,
    duration_ms,
    effective_states,
    load_samples_by_id,
)
from store import InfluxClient
from wire import to_epoch_ms

_RUNNING = STATE_CODE["running"]


def running_from_samples(
    ts_ms: IntArray,
    codes: Int8Array,
    start: int,
    end: int,
    max_gap_ms: int,
    carry_horizon_ms: int = duration_ms(CARRY_HORIZON),
) -> list[tuple[int, int]]:
    """Running intervals ``[a, b)`` (ms) within ``[start, end)``, merged, in time order.

    ``ts_ms`` / ``codes`` are one machine's samples as the usage engine loads them
    (sorted, unique; ``NO_STATE`` for a value-only sample).
    """
    if ts_ms.size == 0:
        return []
    held = effective_states(ts_ms, codes, max_gap_ms, carry_horizon_ms)
    ends = ts_ms + max_gap_ms
    ends[:-1] = np.minimum(ends[:-1], ts_ms[1:])
    lo = np.maximum(ts_ms, start)
    hi = np.minimum(ends, end)
    keep = (held == _RUNNING) & (hi > lo)
    out: list[tuple[int, int]] = []
    for a, b in zip(lo[keep].tolist(), hi[keep].tolist(), strict=True):
        if out and out[-1][1] >= a:
            out[-1] = (out[-1][0], max(out[-1][1], b))
        else:
            out.append((a, b))
    return out


def running_intervals(
    client: InfluxClient,
    machines: Iterable[str],
    start: datetime,
    end: datetime,
    max_gap: timedelta = DEFAULT_MAX_GAP,
) -> dict[str, list[tuple[int, int]]]:
    """Running intervals per machine within ``[start, end)``, from its raw samples (read for
    the whole fleet at once: ``analytics.usage.load_samples_by_id``)."""
    names = sorted(set(machines))
    if not names or end <= start:
        return {}
    lo, hi = to_epoch_ms(start), to_epoch_ms(end)
    gap = duration_ms(max_gap)
    samples = load_samples_by_id(client, names, lo, hi, max_gap=max_gap)
    return {
        name: running_from_samples(s.ts_ms, s.codes, lo, hi, gap) for name, s in samples.items()
    }


def running_seconds_since(
    client: InfluxClient,
    since: dict[str, int],
    end_ms: int,
    max_gap: timedelta = DEFAULT_MAX_GAP,
) -> dict[str, float]:
    """Per machine, seconds running within ``[since[machine], end_ms)``, for the whole fleet
    from one read (the increments of the service-interval counters, cycle by cycle)."""
    wanted = {name: lo for name, lo in since.items() if lo < end_ms}
    if not wanted:
        return {name: 0.0 for name in since}
    gap = duration_ms(max_gap)
    samples = load_samples_by_id(
        client, sorted(wanted), min(wanted.values()), end_ms, max_gap=max_gap
    )
    out = {name: 0.0 for name in since}
    for name, lo in wanted.items():
        s = samples[name]
        out[name] = (
            sum(b - a for a, b in running_from_samples(s.ts_ms, s.codes, lo, end_ms, gap)) / 1000
        )
    return out
