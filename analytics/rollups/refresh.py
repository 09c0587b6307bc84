"""Keep the rollups current: recompute the machine-hours the ingest logged since last time."""

from __future__ import annotations

import time
from datetime import datetime, timedelta
from pathlib import Path

from analytics.machines import MachineKey
from analytics.periods import floor_hour, to_ms
from analytics.rollups.watermark import RefreshState, refresh_lock
from analytics.rollups.write import recompute_hours
from analytics.usage import CARRY_HORIZON, DEFAULT_MAX_GAP, duration_ms
from store import InfluxClient, quote_ident
from store.schema import FIELD_HOUR, INGEST_TOUCHED, TAG_MACHINE, TAG_SITE

# Markers are re-read from this long before the watermark: a write whose marker was stamped
# before the newest one seen but landed later (another worker, a retried write) is still
# seen. Cheap: the hours touched recently are the ones recomputed every cycle anyway.
DEFAULT_OVERLAP = timedelta(minutes=5)


def touched_since(
    client: InfluxClient, after_ns: int | None
) -> tuple[dict[MachineKey, set[int]], int]:
    """Machine-hours the ingest logged after ``after_ns`` and the newest marker time (ns)."""
    clause = f" WHERE time > {after_ns}" if after_ns is not None else ""
    series = client.query_series(
        f"SELECT {quote_ident(FIELD_HOUR)} FROM {quote_ident(INGEST_TOUCHED)}{clause} "
        f"GROUP BY {quote_ident(TAG_SITE)}, {quote_ident(TAG_MACHINE)}",
        epoch="ns",
    )
    touched: dict[MachineKey, set[int]] = {}
    newest = after_ns if after_ns is not None else 0
    for s in series:
        key = MachineKey(s.tags.get(TAG_SITE, ""), s.tags.get(TAG_MACHINE, ""))
        hours = touched.setdefault(key, set())
        for ts_ns, hour in s.values:
            if hour is not None:
                hours.add(floor_hour(int(hour)))
            newest = max(newest, int(ts_ns))
    return touched, newest


def refresh_rollups(
    client: InfluxClient,
    *,
    since: datetime | None = None,
    state_file: Path,
    max_gap: timedelta = DEFAULT_MAX_GAP,
    carry_horizon: timedelta = CARRY_HORIZON,
    overlap: timedelta = DEFAULT_OVERLAP,
) -> int:
    """Recompute usage_hourly for the machine-hours the ingest touched since the last call.

    The watermark (newest marker write time seen) is kept in ``state_file``; each call
    re-reads markers from ``overlap`` before it, so markers of writes that were still in
    flight at the last call are not missed (recomputing an hour twice is harmless).
    ``since`` reads markers written after that instant instead. Without a state file,
    the whole log is read. Returns the machine-hours recomputed.
    """
    with refresh_lock(state_file):
        state = RefreshState.read(state_file)
        if since is not None:
            after: int | None = to_ms(since) * 1_000_000
        elif state is not None:
            after = state.watermark_ns - duration_ms(overlap) * 1_000_000
        else:
            after = None
        touched, newest = touched_since(client, after)
        hours = recompute_hours(client, touched, max_gap=max_gap, carry_horizon=carry_horizon)
        # Never past our own clock: an ingest host whose clock runs ahead would otherwise
        # push the watermark beyond the markers other hosts are still writing.
        newest = min(newest, time.time_ns())
        previous = state.watermark_ns if state is not None else 0
        if newest > previous or state is None:
            RefreshState(max(newest, previous)).write(state_file)
    return hours
