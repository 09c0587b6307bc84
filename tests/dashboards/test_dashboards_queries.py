"""Every dashboard query, expanded the way Grafana expands it, against a real InfluxDB.

A simulated fleet (simulators/) writes its readings into the test's database in the
ingest's schema. The other measurements the panels read — hourly rollups, alert
transitions, presence and ingest statistics — are written here by hand as stand-ins
for what the analytics, edge and ingest services store (same names, from
store/schema.py). Then each panel target, annotation and variable query runs with
``$timeFilter``, ``$__interval`` and the template variables expanded; each panel must
return data and name only measurements, fields and tags that exist.
"""

from __future__ import annotations

import json
import re
import tempfile
from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from analytics.downtime import DowntimeStore
from analytics.floor import floor_runs
from analytics.floor_points import write_floor
from common.settings import RunhoursSettings
from dashboards import ContractView, build_all, render
from dashboards.check import (
    SchemaCatalog,
    check_all,
    default_variables,
    panel_failures,
    referenced_names,
    split_subquery,
)
from dashboards.macros import Variable
from runhours.cli import app
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
from tests.plantfloor import plant_for
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
    alerts = []
    for machine, transitions in (
        # Acknowledged after it resolved: must not count as active again.
        (first, [("firing", 60, 4.8), ("resolved", 120, 3.9), ("acked", 130, 3.9)]),
        # Acknowledged while firing: still active.
        (second, [("firing", 150, 4.6), ("acked", 160, 4.7)]),
    ):
        tags = {
            TAG_SITE: site,
            TAG_LINE: data.lines[machine],
            TAG_MACHINE: machine,
            TAG_RULE: "vibration-critical",
            TAG_SEVERITY: "critical",
        }
        for status_name, minute, value in transitions:
            ts = int((START + timedelta(minutes=minute)).timestamp() * 1000)
            transition: dict[str, float | str] = {
                FIELD_ALERT_ID: f"vibration-critical/{machine}",
                FIELD_STATUS: status_name,
                FIELD_VALUE: value,
            }
            alerts.append(Point(ALERTS, tags, transition, ts))
    influx.write(alerts)

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


@pytest.fixture
def fleet_data(influx: InfluxClient, test_id: str) -> FleetData:
    return write_fleet(influx, site=test_id)


def _contracts(data: FleetData) -> list[ContractView]:
    half = len(data.machines) // 2
    return [
        ContractView(
            "PBH-001", tuple(data.machines[:half]), ("running",), Decimal("100"), "Europe/Berlin"
        ),
        ContractView("PBH-002", tuple(data.machines[half:]), ("running", "idle"), None, "UTC"),
    ]


def _boards(data: FleetData) -> dict[str, dict[str, Any]]:
    return {name: json.loads(render(b)) for name, b in build_all(_contracts(data)).items()}


def _target(board: dict[str, Any], title: str) -> list[str]:
    panel = next(p for p in board["panels"] if p["title"] == title)
    return [t["query"] for t in panel["targets"]]


def test_every_panel_query_returns_data(influx: InfluxClient, fleet_data: FleetData) -> None:
    boards = _boards(fleet_data)
    outcomes = check_all(influx, boards, start=START, end=END)
    assert panel_failures(outcomes) == []
    # Every panel target, annotation and variable of the four dashboards ran.
    panels = sum(len(b["panels"]) for b in boards.values())
    assert panels >= 30
    assert {o.query.dashboard for o in outcomes} == set(boards)
    unexpanded = [o.expanded for o in outcomes if re.search(r"\$\w|\$\{|\[\[", o.expanded)]
    assert unexpanded == [], "a macro or variable was left unexpanded"
    # The variables were the multi-value "All" form: /^(a|b|…)$/ with escaped values.
    machine_var = default_variables(influx)["machine"]
    assert machine_var.values == tuple(sorted(fleet_data.machines))
    every = "|".join(sorted(fleet_data.machines))
    assert sum(f'"machine" =~ /^({every})$/' in o.expanded for o in outcomes) > 20


def test_detail_dashboard_with_two_machines_selected(
    influx: InfluxClient, fleet_data: FleetData
) -> None:
    """The machine detail board with a multi-value selection (`/^(a|b)$/`)."""
    board = _boards(fleet_data)["machine-detail.json"]
    site = Variable((fleet_data.site,))
    line = Variable(tuple(sorted(set(fleet_data.lines.values()))))
    picked = Variable(("cnc-01", "pump-01"))
    outcomes = check_all(
        influx,
        {"machine-detail.json": board},
        start=START,
        end=END,
        variables={"site": site, "line": line, "machine": picked},
    )
    # Oil temperature is a compressor signal: neither a mill nor a pump has one.
    assert panel_failures(outcomes) == ["machine-detail.json: panel 'Oil temperature': no data"]
    hour_meter = next(o for o in outcomes if o.query.where.startswith("panel 'Hour meter'"))
    assert '"machine" =~ /^(cnc-01|pump-01)$/' in hour_meter.expanded
    rows = influx.query_rows(hour_meter.expanded)
    assert {r["machine"]: r["last"] for r in rows} == pytest.approx(
        {m: fleet_data.last_run_seconds[m] / 3600 for m in ("cnc-01", "pump-01")}
    )


def _run(influx: InfluxClient, query: str, *, time_from: str | None = None) -> list[dict[str, Any]]:
    from dashboards.check import DashboardQuery, run_query

    outcome = run_query(
        influx,
        SchemaCatalog(influx),
        DashboardQuery("test", "panel", query, None, time_from),
        start=START,
        end=END,
        variables=default_variables(influx),
    )
    assert outcome.error is None and not outcome.unknown_names
    return influx.query_rows(outcome.expanded)


def test_fleet_panels_show_the_exact_figures(influx: InfluxClient, fleet_data: FleetData) -> None:
    board = _boards(fleet_data)["fleet-overview.json"]
    # Machines by state: one query per state, counts add up to the fleet.
    counts: dict[str, int] = {}
    for query in _target(board, "Machines by state"):
        for row in _run(influx, query):
            counts.update({k: v for k, v in row.items() if k != "time"})
    expected: dict[str, int] = defaultdict(int)
    for state in fleet_data.last_state.values():
        expected[state] += 1
    assert counts == dict(expected)
    # Presence: the one offline machine.
    [presence] = _run(influx, _target(board, "Online / offline")[0])
    assert (presence["online"], presence["offline"]) == (len(fleet_data.machines) - 1, 1)
    # Active alerts: only the machine whose alert is still firing.
    rows = _run(influx, _target(board, "Active alerts")[0])
    assert [(r["machine"], r["status"], r["value"]) for r in rows] == [
        (fleet_data.active_alert, "firing", 4.6)
    ]
    assert rows[0]["time"] == (START + timedelta(minutes=150)).timestamp() * 1000  # since
    # Samples lost on the way: 30 in the gap, 10 of them late; the first machine dropped 11.
    transit, edge = _target(board, "Samples lost on the way")
    assert [r["lost in transit"] for r in _run(influx, transit)] == [20]
    assert [r["dropped at the edge"] for r in _run(influx, edge)] == [11]
    [gap] = _run(influx, _target(board, "Delivery gaps")[0])
    assert (gap["machine"], gap["first_seq"], gap["last_seq"], gap["cause"]) == (
        fleet_data.active_alert,
        10,
        12,
        "broker queue limit",
    )
    # Run-hours today, from the rollups (the panel's range is `now/d`).
    rows = _run(influx, _target(board, "Run-hours today")[0], time_from="now/d")
    assert {r["machine"]: r["run-hours"] for r in rows} == pytest.approx(
        {m: s / 3600 for m, s in fleet_data.running_s.items() if s > 0}
    )


def test_usage_contract_panels(influx: InfluxClient, fleet_data: FleetData) -> None:
    board = _boards(fleet_data)["usage-billing.json"]
    contracts = _contracts(fleet_data)
    [query] = _target(board, "PBH-001: billable hours this month vs minimum 100 h")
    assert "tz('Europe/Berlin')" in query
    rows = _run(influx, query, time_from="now/M")
    expected = sum(fleet_data.running_s[m] for m in contracts[0].machines) / 3600
    assert rows[-1]["billable"] == pytest.approx(expected)
    panel = next(p for p in board["panels"] if p["title"].startswith("PBH-001"))
    steps = panel["fieldConfig"]["defaults"]["thresholds"]["steps"]
    assert steps == [{"color": "red", "value": None}, {"color": "green", "value": 100.0}]


def test_a_misspelled_name_fails_the_check(influx: InfluxClient, fleet_data: FleetData) -> None:
    catalog = SchemaCatalog(influx)
    assert catalog.unknown('SELECT mean("vibration_mms") FROM "telemetry" WHERE $timeFilter') == [
        "field or tag 'vibration_mms'"
    ]
    assert catalog.unknown('SELECT mean("vibration_mm_s") FROM "telemetri"') == [
        "measurement 'telemetri'"
    ]
    assert catalog.unknown('SELECT last("online") AS "online" FROM "machine_status"') == []
    subquery = 'FROM (SELECT last("online") AS "o" FROM "machine_status" GROUP BY "machine")'
    assert catalog.unknown(f'SELECT sum("o"), count("machine") {subquery}') == []
    assert catalog.unknown(f'SELECT sum("0") {subquery}') == ["column '0'"]
    # The same mistake inside a dashboard makes the whole check fail, although InfluxDB
    # itself answers such a query with an empty result and no error.
    boards = _boards(fleet_data)
    text = json.dumps(boards["machine-detail.json"]).replace(
        'mean(\\"oil_temp_c\\")', 'mean(\\"oil_temp\\")'
    )
    assert text != json.dumps(boards["machine-detail.json"])
    broken = {"machine-detail.json": json.loads(text)}
    problems = panel_failures(check_all(influx, broken, start=START, end=END))
    assert any("unknown field or tag 'oil_temp'" in p for p in problems)
    assert any("'Oil temperature': no data" in p for p in problems)


def test_referenced_names_and_subqueries() -> None:
    query = (
        'SELECT sum("o") AS "online", count("o") FROM (SELECT last("online") AS "o" '
        'FROM "machine_status" WHERE "site" =~ /^(a|b)$/ GROUP BY "machine")'
    )
    outer, inner = split_subquery(query)
    assert outer == 'SELECT sum("o") AS "online", count("o") FROM ()'
    assert inner == (
        'SELECT last("online") AS "o" FROM "machine_status" WHERE "site" =~ /^(a|b)$/ '
        'GROUP BY "machine"'
    )
    assert referenced_names(inner) == ({"machine_status"}, {"online", "site", "machine"})
    assert referenced_names(outer) == (set(), {"o"})


def test_cli_check(settings: RunhoursSettings, fleet_data: FleetData) -> None:
    env = {"RUNHOURS_INFLUX_URL": settings.influx_url, "RUNHOURS_INFLUX_DB": settings.influx_db}
    args = ["dashboards", "check", "--from", START.isoformat(), "--to", END.isoformat()]
    result = CliRunner().invoke(app, args, env=env, terminal_width=200)
    assert result.exit_code == 0, result.output
    assert re.search(r"all \d+ queries answered with data", result.output)
    # A range with no data: every panel is reported, exit 1.
    empty = ["--from", "2020-01-01", "--to", "2020-01-02"]
    result = CliRunner().invoke(app, [*args[:2], *empty], env=env, terminal_width=200)
    assert result.exit_code == 1
    assert "fleet-overview.json: panel 'State timeline': no data" in result.output


def test_detail_hours_per_day_are_per_machine(influx: InfluxClient, fleet_data: FleetData) -> None:
    """With several machines selected, each machine keeps its own daily hours (a sum over
    the selection would show e.g. 9 running hours for two machines that ran 4 and 5)."""
    board = _boards(fleet_data)["machine-detail.json"]
    [query] = _target(board, "Hours per day by state")
    picked = ("cnc-01", "pump-01")
    variables = {
        "site": Variable((fleet_data.site,)),
        "line": Variable(tuple(sorted(set(fleet_data.lines.values())))),
        "machine": Variable(picked),
    }
    from dashboards.check import DashboardQuery, run_query

    outcome = run_query(
        influx,
        SchemaCatalog(influx),
        DashboardQuery("machine-detail.json", "panel", query),
        start=START,
        end=END,
        variables=variables,
    )
    assert outcome.error is None and not outcome.unknown_names
    series = influx.query_series(outcome.expanded)
    running = {s.tags.get("machine"): [r["running"] for r in s.rows()] for s in series}
    # The six hours lie in one UTC day: one bar per machine.
    assert running == {m: [pytest.approx(fleet_data.running_s[m] / 3600)] for m in picked}


def test_active_alerts_include_ones_raised_before_the_range(
    influx: InfluxClient, fleet_data: FleetData
) -> None:
    """An alert still firing is active however long ago it fired; one resolved before the
    range is not."""
    third, fourth = fleet_data.machines[2], fleet_data.machines[3]
    old = []
    for machine, transitions in (
        (third, [("firing", -2 * 24 * 60, 5.1), ("acked", -24 * 60, 5.0)]),
        (fourth, [("firing", -3 * 24 * 60, 4.9), ("resolved", -3 * 24 * 60 + 30, 4.0)]),
    ):
        tags = {
            TAG_SITE: fleet_data.site,
            TAG_LINE: fleet_data.lines[machine],
            TAG_MACHINE: machine,
            TAG_RULE: "vibration-critical",
            TAG_SEVERITY: "critical",
        }
        for status_name, minute, value in transitions:
            ts = int((START + timedelta(minutes=minute)).timestamp() * 1000)
            fields: dict[str, float | str] = {
                FIELD_ALERT_ID: f"vibration-critical/{machine}",
                FIELD_STATUS: status_name,
                FIELD_VALUE: value,
            }
            old.append(Point(ALERTS, tags, fields, ts))
    influx.write(old)
    board = _boards(fleet_data)["fleet-overview.json"]
    rows = _run(influx, _target(board, "Active alerts")[0])
    assert sorted((r["machine"], r["status"], r["value"]) for r in rows) == sorted(
        [(fleet_data.active_alert, "firing", 4.6), (third, "firing", 5.1)]
    )
