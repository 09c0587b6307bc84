"""Usage for a reader: from the rollups (older ones migrated first) or from raw samples."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta, tzinfo

from analytics.counters import CounterRules, IntArray
from analytics.machines import MachineRef, Ref, resolve_machines, telemetry_keys
from analytics.periods import BucketSize, bucket_edges, on_utc_hours, to_ms
from analytics.rollups.read import StaleRollupsError, read_rollups
from analytics.rollups.write import rebuild_rollups
from analytics.usage import DEFAULT_MAX_GAP, Usage, UsageSeries, raw_usage_series
from store import InfluxClient
from wire import from_epoch_ms


def migrate_rollups(client: InfluxClient, stale: StaleRollupsError) -> int:
    """Recompute the hours of a :class:`StaleRollupsError` for every site's machines with
    its ids; returns the machine-hours written."""
    keys = [k for k in telemetry_keys(client) if k.machine in set(stale.machines)]
    start, end = from_epoch_ms(stale.start_ms), from_epoch_ms(stale.end_ms)
    return rebuild_rollups(client, start, end, keys) if keys else 0


def usage_series(
    client: InfluxClient,
    machines: Iterable[Ref],
    edges_ms: Sequence[int] | IntArray,
    *,
    from_raw: bool = False,
    max_gap: timedelta = DEFAULT_MAX_GAP,
    rules: CounterRules = CounterRules(),
) -> dict[Ref, UsageSeries]:
    """Usage per machine per bucket: from rollups, or from raw samples when asked, when an
    edge is not a whole UTC hour (zones with half-hour offsets) or when the hour-meter
    ``rules`` are not the rollups' defaults.

    Rollups of an older version in the range are recomputed first (once; if some cannot
    be, :class:`StaleRollupsError` says which).
    """
    refs = list(machines)
    edges = [int(e) for e in edges_ms]
    if from_raw or not on_utc_hours(edges) or not rules.is_default:
        return raw_usage_series(client, refs, edges, max_gap=max_gap, rules=rules)
    try:
        return read_rollups(client, refs, edges)
    except StaleRollupsError as stale:
        migrate_rollups(client, stale)
        return read_rollups(client, refs, edges)


def fleet_usage(
    client: InfluxClient,
    start: datetime,
    end: datetime,
    *,
    machines: Iterable[MachineRef] | None = None,
    by: BucketSize | None = None,
    tz: tzinfo = UTC,
    from_raw: bool = False,
    rules: CounterRules = CounterRules(),
) -> list[Usage]:
    """Usage per machine (sorted by site and id) and bucket (``by`` = hour, day, month or
    None for one). ``machines`` are keys or names; a bare id that exists at two sites is
    an error (:class:`analytics.machines.MachineError`), never a merge.

    Buckets are local calendar hours/days/months in ``tz``; the returned start and end
    are in ``tz`` too.
    """
    edges = bucket_edges(start, end, by, tz)
    if machines is None:
        keys = telemetry_keys(client)
    else:
        keys = sorted(set(resolve_machines(client, machines).values()))
    found = usage_series(client, keys, [to_ms(e) for e in edges], from_raw=from_raw, rules=rules)
    return [
        replace(usage, start=edges[k], end=edges[k + 1])
        for key in keys
        for k, usage in enumerate(found[key].usages())
    ]
