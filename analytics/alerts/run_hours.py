"""Running time of machines, for service-interval rules, counted exactly as billing counts.

``run_seconds`` (hours since the last service, up to a window's start) asks the usage
engine (``analytics.usage.machine_usage``). Inside an evaluation window the running
*intervals* are needed step by step; ``running_intervals`` reads the same raw samples
with the same loader (``analytics.usage.load_samples``) and applies the same step
semantics (``analytics.usage.effective_states``): a state holds until the next sample,
at most ``max_gap``, and value-only samples (heartbeats) carry it forward. So the
run-hours an alert reports are the run-hours on the invoice.
"""

from __future__ import annotations

from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
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
    load_samples,
    machine_usage,
    telemetry_fields,
)
from contract import to_epoch_ms
from store import InfluxClient

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
    workers: int = 4,
) -> dict[str, list[tuple[int, int]]]:
    """Running intervals per machine within ``[start, end)``, from its raw samples."""
    names = sorted(set(machines))
    if not names or end <= start:
        return {}
    lo, hi = to_epoch_ms(start), to_epoch_ms(end)
    fields = telemetry_fields(client)

    def one(machine: str) -> list[tuple[int, int]]:
        samples = load_samples(client, machine, lo, hi, max_gap=max_gap, fields=fields)
        return running_from_samples(samples.ts_ms, samples.codes, lo, hi, duration_ms(max_gap))

    with ThreadPoolExecutor(max_workers=max(1, min(workers, len(names)))) as pool:
        return dict(zip(names, pool.map(one, names), strict=True))


def run_seconds(
    client: InfluxClient,
    machine: str,
    start: datetime,
    end: datetime,
    max_gap: timedelta = DEFAULT_MAX_GAP,
) -> float:
    """Seconds ``machine`` spent running within ``[start, end)`` (the usage engine's count)."""
    if end <= start:
        return 0.0
    return machine_usage(client, machine, start, end, max_gap=max_gap).running_seconds
