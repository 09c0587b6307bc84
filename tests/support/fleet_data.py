"""Six simulated machines' shift written straight to InfluxDB, with what was written kept
for exact checks: the data the dashboard and report queries read."""

from __future__ import annotations

import tempfile
from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from analytics.downtime import DowntimeStore
from analytics.floor import floor_runs
from analytics.floor_points import write_floor
from simulators import MachineSim, fleet
from store import InfluxClient, Point
from store.schema import (
    ALERTS,
    FIELD_ALERT_ID,
    FIELD_BATCH_POINTS,
    FIELD_BUFFERED,
    FIELD_CAUSE,
    FIELD_COUNTER_S,
    FIELD_DROPPED_TOTAL,
    FIELD_FIRST_SEQ,
    FIELD_KNOWN_S,
    FIELD_LAST_SEQ,
    FIELD_MESSAGES,
    FIELD_MESSAGES_INVALID,
    FIELD_MESSAGES_RECEIVED,
    FIELD_ONLINE,
    FIELD_POINTS_WRITTEN,
    FIELD_QUEUE_DEPTH,
    FIELD_RECOVERED_MESSAGES,
    FIELD_RECOVERED_SAMPLES,
    FIELD_RUN_SECONDS_TOTAL,
    FIELD_SAMPLES,
    FIELD_STATE,
    FIELD_STATUS,
    FIELD_VALUE,
    FIELD_WRITE_LATENCY_MS,
    INGEST_GAPS,
    INGEST_STATS,
    MACHINE_STATUS,
    TAG_LINE,
    TAG_MACHINE,
    TAG_RULE,
    TAG_SEVERITY,
    TAG_SITE,
    TAG_WORKER,
    TELEMETRY,
    USAGE_HOURLY,
    state_seconds_field,
)
from tests.support.plantfloor import plant_for
from wire import STATES

# A Monday morning shift (Europe/Berlin), six hours: machines run, idle and stop.
START = datetime(2026, 3, 2, 5, 0, tzinfo=UTC)


END = START + timedelta(hours=6)


HOUR_MS = 3_600_000


MAX_GAP_MS = 300_000


@dataclass
class FleetData:
    """What was written, for exact checks."""

    machines: list[str]
    site: str
    lines: dict[str, str]
    last_state: dict[str, str]
    last_run_seconds: dict[str, float]
    running_s: dict[str, float]  # per machine, over the whole run
    offline: set[str]
    active_alert: str  # the machine whose alert is still firing
    telemetry_points: int


def _telemetry_points(sim: MachineSim, site: str) -> tuple[list[Point], list[tuple[int, str]]]:
    """The ingest's mapping: tags site/line/machine, float fields, `state`, and the
    counters on the last sample of each message (here: batches of 6 samples)."""
    tags = {TAG_SITE: site, TAG_LINE: sim.spec.line, TAG_MACHINE: sim.spec.machine}
    points: list[Point] = []
    states: list[tuple[int, str]] = []
    readings = sim.advance(END)
    for i, reading in enumerate(readings):
        fields: dict[str, float | str] = dict(reading.sample.values)
        if reading.sample.state is not None:
            fields[FIELD_STATE] = reading.sample.state
            states.append((reading.sample.ts_ms, reading.sample.state))
        if i % 6 == 5 or i == len(readings) - 1:
            fields.update(reading.counters)
        points.append(Point(TELEMETRY, tags, fields, reading.sample.ts_ms))
    return points, states


def _hourly_rollups(states: list[tuple[int, str]], end_ms: int) -> dict[int, dict[str, float]]:
    """Seconds per state per UTC hour, each state holding until the next sample (max_gap)."""
    hours: dict[int, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    for (ts, state), (next_ts, _) in zip(states, [*states[1:], (end_ms, "")], strict=True):
        lo, hi = ts, min(next_ts, ts + MAX_GAP_MS)
        while lo < hi:
            hour = lo - lo % HOUR_MS
            cut = min(hi, hour + HOUR_MS)
            hours[hour][state] += (cut - lo) / 1000
            lo = cut
    return hours


def write_fleet(influx: InfluxClient, site: str, machines: int = 6) -> FleetData:
    """Simulate ``machines`` for six hours and write everything the dashboards read."""
    specs = fleet(machines, start=START, site=site, degrading=0)
    sims = [MachineSim(spec, START, sample_interval_s=10.0) for spec in specs]
    end_ms = int(END.timestamp() * 1000)
    data = FleetData([], site, {}, {}, {}, {}, set(), "", 0)
    rollups: list[Point] = []
    for sim in sims:
        machine = sim.spec.machine
        tags = {TAG_SITE: site, TAG_LINE: sim.spec.line, TAG_MACHINE: machine}
        points, states = _telemetry_points(sim, site)
        influx.write(points)
        data.machines.append(machine)
        data.lines[machine] = sim.spec.line
        data.telemetry_points += len(points)
        data.last_state[machine] = states[-1][1]
        data.last_run_seconds[machine] = next(
            float(p.fields[FIELD_RUN_SECONDS_TOTAL])
            for p in reversed(points)
            if FIELD_RUN_SECONDS_TOTAL in p.fields
        )
        # Stand-in for the analytics rollups (usage_hourly).
        total_running = 0.0
        for hour, per_state in sorted(_hourly_rollups(states, end_ms).items()):
            fields = {state_seconds_field(s): per_state.get(s, 0.0) for s in STATES}
            fields[FIELD_KNOWN_S] = sum(per_state.values())
            fields[FIELD_COUNTER_S] = per_state.get("running", 0.0)
            total_running += per_state.get("running", 0.0)
            rollups.append(Point(USAGE_HOURLY, tags, fields, hour))
        data.running_s[machine] = total_running
    influx.write(rollups)

    # Stand-in for the edge agents' status (machine_status): the last machine is offline.
    status = []
    for i, machine in enumerate(data.machines):
        tags = {TAG_SITE: site, TAG_LINE: data.lines[machine], TAG_MACHINE: machine}
        online = 0.0 if i == len(data.machines) - 1 else 1.0
        if not online:
            data.offline.add(machine)
        for minute in range(0, 360, 30):
            ts = int((START + timedelta(minutes=minute)).timestamp() * 1000)
            fields = {
                FIELD_ONLINE: online,
                FIELD_BUFFERED: float(minute % 90),
                FIELD_DROPPED_TOTAL: float(minute // 30 if i == 0 else 0),  # the first drops
            }
            status.append(Point(MACHINE_STATUS, tags, fields, ts))
    influx.write(status)

    # Stand-in for the alerts service: one vibration alert resolved, one still firing.
    first, second = data.machines[0], data.machines[1]
    data.active_alert = second
    write_alert_transitions(
        influx,
        data,
        {
            # Acknowledged after it resolved: must not count as active again.
            first: [("firing", 60, 4.8), ("resolved", 120, 3.9), ("acked", 130, 3.9)],
            # Acknowledged while firing: still active.
            second: [("firing", 150, 4.6), ("acked", 160, 4.7)],
        },
    )

    # Stand-in for the ingest's gap reports (ingest_gaps): one gap, partly recovered.
    gap_tags = {TAG_SITE: site, TAG_LINE: data.lines[second], TAG_MACHINE: second}
    gap_ts = int((START + timedelta(minutes=200)).timestamp() * 1000)
    gap_fields: dict[str, float | str] = {
        FIELD_FIRST_SEQ: 10.0,
        FIELD_LAST_SEQ: 12.0,
        FIELD_MESSAGES: 3.0,
        FIELD_SAMPLES: 30.0,
        FIELD_RECOVERED_MESSAGES: 1.0,
        FIELD_RECOVERED_SAMPLES: 10.0,
        FIELD_CAUSE: "broker queue limit",
    }
    influx.write([Point(INGEST_GAPS, gap_tags, gap_fields, gap_ts)])

    # Stand-in for the ingest's own statistics (ingest_stats), two workers every 10 s.
    stats = []
    for worker in ("w1", "w2"):
        for k in range(0, 6 * 360):
            ts = int((START + timedelta(seconds=10 * k)).timestamp() * 1000)
            fields = {
                FIELD_MESSAGES_RECEIVED: float(50 * k),
                FIELD_MESSAGES_INVALID: float(k // 100),
                FIELD_POINTS_WRITTEN: float(300 * k),
                FIELD_WRITE_LATENCY_MS: 4.0 + k % 7,
                FIELD_BATCH_POINTS: 300.0,
                FIELD_QUEUE_DEPTH: float(k % 13),
            }
            stats.append(Point(INGEST_STATS, {TAG_WORKER: worker}, fields, ts))
    influx.write(stats)

    # The analytics service's plant-floor points (oee_shift, downtime) from that telemetry,
    # the example plant's shifts, and one stop with a reason.
    plant = plant_for(site)
    floors = floor_runs(influx, plant, None, START, END, now=END)
    with tempfile.TemporaryDirectory() as folder:
        store = DowntimeStore(Path(folder) / "downtime.sqlite3")
        stopped = next(f for f in floors if f.stops)
        store.put(stopped.key, stopped.stops[0][1], "TOOL", "jdoe")
        write_floor(influx, floors, store, plant)
    return data


def write_alert_transitions(
    influx: InfluxClient,
    data: FleetData,
    transitions: dict[str, list[tuple[str, int, float]]],
) -> None:
    """Stand-in for the alerts service: a "vibration-critical" alert's transitions per
    machine, each ``(status, minutes after START, value)``."""
    points = []
    for machine, steps in transitions.items():
        tags = {
            TAG_SITE: data.site,
            TAG_LINE: data.lines[machine],
            TAG_MACHINE: machine,
            TAG_RULE: "vibration-critical",
            TAG_SEVERITY: "critical",
        }
        for status_name, minute, value in steps:
            ts = int((START + timedelta(minutes=minute)).timestamp() * 1000)
            fields: dict[str, float | str] = {
                FIELD_ALERT_ID: f"vibration-critical/{machine}",
                FIELD_STATUS: status_name,
                FIELD_VALUE: value,
            }
            points.append(Point(ALERTS, tags, fields, ts))
    influx.write(points)
