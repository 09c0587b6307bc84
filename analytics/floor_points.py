"""The plant floor in InfluxDB for dashboards: ``oee_shift`` and ``downtime`` points.

Grafana reads InfluxDB only, and InfluxQL cannot cut telemetry at shift changes and
breaks: so the analytics service writes, per machine and shift run, its exact figures
(``oee_shift``) and its stops with their reasons (``downtime``), as docs/schema.md
describes. These points are derived: :func:`refresh_floor` recomputes the runs that
hold hours the ingest wrote to since its last call (the ``ingest_touched`` log, like the
usage rollups), and :func:`write_floor` the runs given (after a reason changed).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from datetime import datetime, timedelta
from pathlib import Path

from analytics.downtime import DowntimeStore
from analytics.floor import MachineFloor, machine_floor
from analytics.machines import MachineKey, key_clause
from analytics.periods import HOUR_MS, to_ms
from analytics.plant import Plant
from analytics.rollups import RefreshState, machine_tags, refresh_lock, touched_since
from analytics.usage import DEFAULT_MAX_GAP, duration_ms, telemetry_fields
from store import InfluxClient, Point, quote_ident
from store.lineprotocol import FieldValue
from store.schema import (
    DOWNTIME,
    FIELD_BY,
    FIELD_IDEAL_GOOD_S,
    FIELD_IDEAL_RUN_S,
    FIELD_KNOWN_S,
    FIELD_PARTS_GOOD,
    FIELD_PARTS_TOTAL,
    FIELD_PLANNED_S,
    FIELD_RUNNING_S,
    FIELD_SECONDS,
    FIELD_SHORT_STOP_S,
    FIELD_STATE,
    FIELD_STOP_S,
    FIELD_STOPS,
    OEE_SHIFT,
    TAG_CATEGORY,
    TAG_LINE,
    TAG_MACHINE,
    TAG_REASON,
    TAG_SHIFT,
    TAG_SITE,
    UNASSIGNED,
)

log = logging.getLogger("runhours.analytics.floor")

STATE_FILE_NAME = "floor.json"
RUN_LENGTH = timedelta(days=1)  # no shift run is longer: how far back a touched hour reaches


def default_floor_state(data_dir: Path) -> Path:
    return data_dir / "analytics" / STATE_FILE_NAME


def floor_points(floor: MachineFloor, store: DowntimeStore, plant: Plant) -> list[Point]:
    """Pure but for the store: the ``oee_shift`` and ``downtime`` points of ``floor``."""
    tags = {TAG_SITE: floor.key.site, TAG_MACHINE: floor.key.machine}
    if floor.line:
        tags[TAG_LINE] = floor.line
    ideal = floor.plan.ideal_cycle_s
    points = []
    for run in floor.runs:
        fields: dict[str, FieldValue] = {
            FIELD_PLANNED_S: run.planned_ms / 1000,
            FIELD_RUNNING_S: run.running_ms / 1000,
            FIELD_KNOWN_S: run.known_ms / 1000,
            FIELD_STOP_S: run.stop_ms / 1000,
            FIELD_STOPS: float(run.stops),
            FIELD_SHORT_STOP_S: run.short_stop_ms / 1000,
        }
        if run.parts_total is not None:
            fields[FIELD_PARTS_TOTAL] = float(run.parts_total)
            if ideal is not None:
                fields[FIELD_IDEAL_RUN_S] = ideal * run.parts_total
        if run.parts_good is not None:
            fields[FIELD_PARTS_GOOD] = float(run.parts_good)
            if ideal is not None and run.parts_total is not None:
                fields[FIELD_IDEAL_GOOD_S] = ideal * run.parts_good
        points.append(
            Point(OEE_SHIFT, {**tags, TAG_SHIFT: run.run.shift}, fields, run.run.start_ms)
        )
    given = store.assignments([floor.key])
    for _, stop in floor.stops:
        assignment = given.get((floor.key, stop.start_ms))
        reason = assignment.reason if assignment else UNASSIGNED
        known = plant.reasons.get(reason)
        category = known.category if known else UNASSIGNED
        fields = {
            FIELD_SECONDS: stop.ms / 1000,
            FIELD_STATE: stop.main_state,
            FIELD_BY: assignment.by if assignment else "",
        }
        points.append(
            Point(
                DOWNTIME,
                {**tags, TAG_REASON: reason, TAG_CATEGORY: category},
                fields,
                stop.start_ms,
            )
        )
    return points


def write_floor(
    client: InfluxClient, floors: Iterable[MachineFloor], store: DowntimeStore, plant: Plant
) -> int:
    """Replace the points of the runs in ``floors``; returns the machine-runs written."""
    written = 0
    for floor in floors:
        if not floor.runs:
            continue
        lo = min(r.run.start_ms for r in floor.runs)
        hi = max(r.run.end_ms for r in floor.runs)
        # A stop's reason is a tag: the runs' old stop points go first (derived data: a
        # dashboard may briefly miss them).
        client.query(
            f"DELETE FROM {quote_ident(DOWNTIME)} WHERE {key_clause(floor.key)} "
            f"AND time >= {lo}ms AND time < {hi}ms",
            epoch=None,
        )
        client.write(floor_points(floor, store, plant))
        written += len(floor.runs)
    return written


def refresh_floor(
    client: InfluxClient,
    plant: Plant,
    store: DowntimeStore,
    *,
    state_file: Path,
    now: datetime | None = None,
    max_gap: timedelta = DEFAULT_MAX_GAP,
) -> int:
    """Recompute the runs holding hours the ingest wrote to since the last call (all of
    the log without a state file); returns the machine-runs written."""
    with refresh_lock(state_file):
        state = RefreshState.read(state_file)
        after = state.watermark_ns - 5 * 60 * 10**9 if state is not None else None
        touched, newest = touched_since(client, after)
        now_ms = to_ms(now) if now is not None else int(time.time() * 1000)
        keys = sorted(k for k, hours in touched.items() if hours and k.site)
        written = 0
        if keys:
            fields = telemetry_fields(client)
            tags = machine_tags(client, keys)
            reach = duration_ms(max_gap) + HOUR_MS  # a sample's state holds into the next hour
            for key in keys:
                hours = sorted(touched[key])
                floor = machine_floor(
                    client,
                    plant,
                    key,
                    tags[key].get(TAG_LINE, ""),
                    hours[0] - duration_ms(RUN_LENGTH),
                    hours[-1] + reach,
                    now_ms,
                    fields=fields,
                    max_gap=max_gap,
                    ending_after_ms=hours[0],
                )
                written += write_floor(client, [floor], store, plant)
        newest = min(newest, time.time_ns())
        previous = state.watermark_ns if state is not None else 0
        if newest > previous or state is None:
            RefreshState(max(newest, previous)).write(state_file)
    return written


def write_run_of(
    client: InfluxClient, plant: Plant, store: DowntimeStore, key: MachineKey, at: datetime
) -> None:
    """Rewrite the points of the run holding ``at`` (after its stop got a reason)."""
    t = to_ms(at)
    line = machine_tags(client, [key])[key].get(TAG_LINE, "")
    floor = machine_floor(
        client,
        plant,
        key,
        line,
        t - duration_ms(RUN_LENGTH),
        t + 1,
        int(time.time() * 1000),
        fields=telemetry_fields(client),
        ending_after_ms=t,
    )
    write_floor(client, [floor], store, plant)
