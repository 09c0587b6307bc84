"""Recompute rollups from raw samples and write them: a range, or the hours touched."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta

import numpy as np

from analytics.machines import MachineKey, MachineRef, resolve_machines, telemetry_keys
from analytics.periods import HOUR_MS, ceil_hour, floor_hour, to_ms
from analytics.rollups.affected import affected_end
from analytics.rollups.points import rollup_points
from analytics.rollups.tags import delete_other_tags, machine_tags, retagged_machines
from analytics.usage import (
    CARRY_HORIZON,
    DEFAULT_MAX_GAP,
    load_samples,
    series_from_samples,
    telemetry_fields,
)
from store import InfluxClient

_REBUILD_CHUNK_HOURS = 24 * 7  # recompute a week of hours per query window


def _compute_and_write(
    client: InfluxClient,
    key: MachineKey,
    tags: dict[str, str],
    first_hour: int,
    end_hour: int,
    fields: Sequence[str],
    max_gap: timedelta,
    carry_horizon: timedelta,
    retagged: bool = False,
) -> int:
    hours = 0
    for lo in range(first_hour, end_hour, _REBUILD_CHUNK_HOURS * HOUR_MS):
        hi = min(lo + _REBUILD_CHUNK_HOURS * HOUR_MS, end_hour)
        samples = load_samples(
            client, key, lo, hi, max_gap=max_gap, carry_horizon=carry_horizon, fields=fields
        )
        edges = np.arange(lo, hi + 1, HOUR_MS, dtype=np.int64)
        series = series_from_samples(
            key, samples, edges, max_gap=max_gap, carry_horizon=carry_horizon
        )
        client.write(rollup_points(series, tags))
        if retagged:  # written first: the hours are never missing, only briefly doubled
            delete_other_tags(client, key, tags, lo, hi)
        hours += len(series)
    return hours


def rebuild_rollups(
    client: InfluxClient,
    start: datetime,
    end: datetime,
    machines: Iterable[MachineRef] | None = None,
    *,
    max_gap: timedelta = DEFAULT_MAX_GAP,
    carry_horizon: timedelta = CARRY_HORIZON,
    workers: int = 4,
) -> int:
    """Recompute ``usage_hourly`` for every UTC hour overlapping ``[start, end)``.

    ``machines`` (keys or names; a bare id must exist at one site) defaults to every
    machine with telemetry. Returns the machine-hours written. Use it to backfill, after
    changing ``max_gap``, to migrate rollups of an older version, or when data was
    written without the ingest (which logs what it touched for :func:`refresh_rollups`).
    """
    if machines is None:
        keys = telemetry_keys(client)
    else:
        keys = sorted({k for k in resolve_machines(client, machines).values() if k.site})
    if not keys:
        return 0
    first_hour, end_hour = floor_hour(to_ms(start)), ceil_hour(to_ms(end))
    fields = telemetry_fields(client)
    tags = machine_tags(client, keys)
    retagged = retagged_machines(client, tags)

    def one(key: MachineKey) -> int:
        return _compute_and_write(
            client,
            key,
            tags[key],
            first_hour,
            end_hour,
            fields,
            max_gap,
            carry_horizon,
            key in retagged,
        )

    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        return sum(pool.map(one, keys))


def _runs(hours: Iterable[int]) -> list[tuple[int, int]]:
    """Consecutive hours merged into ``[first, end)`` ranges (epoch ms)."""
    runs: list[tuple[int, int]] = []
    for hour in sorted(set(hours)):
        if runs and runs[-1][1] == hour:
            runs[-1] = (runs[-1][0], hour + HOUR_MS)
        else:
            runs.append((hour, hour + HOUR_MS))
    return runs


def recompute_hours(
    client: InfluxClient,
    touched: dict[MachineKey, set[int]],
    *,
    max_gap: timedelta = DEFAULT_MAX_GAP,
    carry_horizon: timedelta = CARRY_HORIZON,
    workers: int = 4,
) -> int:
    """Recompute the given machine-hours (epoch ms of UTC hour starts) and what they affect."""
    keys = sorted(k for k, hours in touched.items() if hours)
    if not keys:
        return 0
    fields = telemetry_fields(client)
    tags = machine_tags(client, keys)
    retagged = retagged_machines(client, tags)

    def one(key: MachineKey) -> int:
        ranges: list[tuple[int, int]] = []
        for first, end in _runs(touched[key]):
            stop = ceil_hour(affected_end(client, key, end, max_gap, carry_horizon))
            if ranges and first <= ranges[-1][1]:
                ranges[-1] = (ranges[-1][0], max(ranges[-1][1], stop))
            else:
                ranges.append((first, stop))
        return sum(
            _compute_and_write(
                client,
                key,
                tags[key],
                a,
                b,
                fields,
                max_gap,
                carry_horizon,
                key in retagged,
            )
            for a, b in ranges
        )

    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        return sum(pool.map(one, keys))
