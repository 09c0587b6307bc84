"""Hourly usage rollups in InfluxDB (``usage_hourly``), kept current from the ingest's log.

One point per machine (site and id) and UTC hour: seconds per state (``running_s``,
``idle_s``, …), ``known_s``, the gaps, and when the machine sent hour-meter readings in
that hour ``counter_s`` (the billed delta) with the meter's anomalies. Billing reads
these, so a month for a plant is a few thousand rows instead of millions of samples.

The ingest logs every machine-hour it wrote to (``ingest_touched``).
:func:`refresh_rollups` recomputes exactly those hours since its last call, plus the
hours after them that a sample can still change: its state holds up to ``max_gap`` into
the next hour, a stated sample changes the heartbeats after it, and a meter reading
changes the delta of the next reading. :func:`rebuild_rollups` recomputes a range.

Points carry ``rollup_version``. Points of an older version (before site keys, gap
counts and the hour-meter rules) are found when read and recomputed from raw samples
for the hours read (:func:`usage_series`); ``runhours billing rebuild-rollups`` migrates a
whole range at once.

The modules, one concern each:

- ``points``: the point's fields and version, from a usage series and back (pure);
- ``tags``: the tags a machine's points carry, and the points left under an old line;
- ``affected``: how far past a window its samples can change the hours;
- ``write``: recompute from raw samples and write (a range, or the hours touched);
- ``watermark``: the refresh watermark file and its lock;
- ``refresh``: recompute what the ingest logged since the watermark;
- ``read``: usage per bucket summed from the points, refusing stale ones;
- ``dispatch``: usage for a reader, from rollups (migrating older ones) or raw samples.

>>> refresh_rollups(client, state_file=Path("var/analytics/rollups.json"))  # doctest: +SKIP
48
"""

from analytics.rollups.dispatch import fleet_usage, migrate_rollups, usage_series
from analytics.rollups.points import ROLLUP_VERSION, rollup_points, series_from_rollup_rows
from analytics.rollups.read import StaleRollupsError, read_rollups
from analytics.rollups.refresh import DEFAULT_OVERLAP, refresh_rollups, touched_since
from analytics.rollups.tags import machine_tags
from analytics.rollups.watermark import (
    STATE_FILE_NAME,
    RefreshState,
    default_state_file,
    refresh_lock,
)
from analytics.rollups.write import rebuild_rollups, recompute_hours

__all__ = [
    "DEFAULT_OVERLAP",
    "ROLLUP_VERSION",
    "STATE_FILE_NAME",
    "RefreshState",
    "StaleRollupsError",
    "default_state_file",
    "fleet_usage",
    "machine_tags",
    "migrate_rollups",
    "read_rollups",
    "rebuild_rollups",
    "recompute_hours",
    "refresh_lock",
    "refresh_rollups",
    "rollup_points",
    "series_from_rollup_rows",
    "touched_since",
    "usage_series",
]
