"""Read rollups back: usage per bucket summed from ``usage_hourly``, refusing stale points."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np

from analytics.counters import IntArray
from analytics.machines import MachineKey, Ref, resolve_machines
from analytics.periods import HOUR_MS, on_utc_hours
from analytics.rollups.points import ROLLUP_VERSION, series_from_rollup_rows
from analytics.usage import UsageSeries
from common.errors import RunhoursError
from store import InfluxClient, quote_ident, quote_string
from store.schema import FIELD_ROLLUP_VERSION, TAG_MACHINE, TAG_SITE, USAGE_HOURLY
from wire import from_epoch_ms


def _where_ids(machines: Sequence[str]) -> str:
    """Every site's machines with these ids."""
    return (
        "(" + " OR ".join(f"{quote_ident(TAG_MACHINE)} = {quote_string(m)}" for m in machines) + ")"
    )


class StaleRollupsError(RunhoursError, RuntimeError):
    """``usage_hourly`` holds points of an older version in a range being read."""

    def __init__(self, machines: Sequence[str], start_ms: int, end_ms: int) -> None:
        self.machines = sorted(set(machines))
        self.start_ms, self.end_ms = start_ms, end_ms
        super().__init__(
            f"usage_hourly holds rollups of an older runhours for {', '.join(self.machines)} "
            f"between {from_epoch_ms(start_ms).isoformat()} and "
            f"{from_epoch_ms(end_ms).isoformat()}: recompute them with `runhours billing "
            "rebuild-rollups` (billing and `runhours usage` do it by themselves)"
        )


def read_rollups(
    client: InfluxClient, machines: Iterable[Ref], edges_ms: Sequence[int] | IntArray
) -> dict[Ref, UsageSeries]:
    """Usage per bucket summed from ``usage_hourly``; every edge must be a whole UTC hour.

    ``machines`` are keys or names (a bare id must exist at one site); the result is
    keyed by them as given. Raises :class:`StaleRollupsError` when the range holds points
    of an older rollup version for any of their ids (at any site).
    """
    edges = np.asarray(edges_ms, dtype=np.int64)
    if not on_utc_hours([int(e) for e in edges]):
        raise ValueError("read_rollups: bucket edges must fall on whole UTC hours")
    refs = resolve_machines(client, machines)
    keys = sorted(set(refs.values()))
    found = {k: UsageSeries.empty(k, edges) for k in keys}
    ids = sorted({k.machine for k in keys if k.site})
    stale: dict[str, list[int]] = {}  # id -> hours written by an older version
    for chunk in range(0, len(ids), 50):
        group = ids[chunk : chunk + 50]
        for series in client.query_series(
            f"SELECT * FROM {quote_ident(USAGE_HOURLY)} WHERE time >= {int(edges[0])}ms "
            f"AND time < {int(edges[-1])}ms AND {_where_ids(group)} "
            f"GROUP BY {quote_ident(TAG_SITE)}, {quote_ident(TAG_MACHINE)}"
        ):
            key = MachineKey(series.tags.get(TAG_SITE, ""), series.tags.get(TAG_MACHINE, ""))
            version = (
                series.columns.index(FIELD_ROLLUP_VERSION)
                if FIELD_ROLLUP_VERSION in series.columns
                else None
            )
            old = [
                int(row[0])
                for row in series.values
                if version is None or (row[version] or 0) < ROLLUP_VERSION
            ]
            if old:
                stale.setdefault(key.machine, []).extend(old)
            elif key in found and series.values:
                found[key] = series_from_rollup_rows(key, series.columns, series.values, edges)
    if stale:
        hours = [h for found_hours in stale.values() for h in found_hours]
        raise StaleRollupsError(sorted(stale), min(hours), max(hours) + HOUR_MS)
    return {ref: found[key] for ref, key in refs.items()}
