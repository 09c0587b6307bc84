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
from collections import defaultdict
from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest
from typer.testing import CliRunner

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
from store import InfluxClient
from tests.support.fleet_data import END, START, FleetData, write_alert_transitions, write_fleet


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
    write_alert_transitions(
        influx,
        fleet_data,
        {
            third: [("firing", -2 * 24 * 60, 5.1), ("acked", -24 * 60, 5.0)],
            fourth: [("firing", -3 * 24 * 60, 4.9), ("resolved", -3 * 24 * 60 + 30, 4.0)],
        },
    )
    board = _boards(fleet_data)["fleet-overview.json"]
    rows = _run(influx, _target(board, "Active alerts")[0])
    assert sorted((r["machine"], r["status"], r["value"]) for r in rows) == sorted(
        [(fleet_data.active_alert, "firing", 4.6), (third, "firing", 5.1)]
    )
