"""Dashboards as code: generated JSON is current, loads as SDK models, is complete.

These run without services; tests/dashboards/test_dashboards_queries.py runs the queries.
"""

from __future__ import annotations

import json
import re
import tomllib
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.cog.plugins import register_default_plugins
from grafana_foundation_sdk.models.dashboard import Dashboard, Panel
from typer.testing import CliRunner

from analytics.billing.contracts import ContractsError
from dashboards import (
    DATASOURCE_UID,
    GENERATED_DIR,
    ContractView,
    InfluxQuery,
    build_all,
    register,
    render,
    write_all,
)
from dashboards.macros import (
    Variable,
    escape_regex,
    expand,
    format_duration,
    grafana_interval,
    panel_range,
)
from dashboards.signals import SIGNALS, STATE_COLORS
from dashboards.thresholds import THRESHOLDS
from runhours.cli import app
from runhours.commands.dashboards import contract_views
from simulators import MachineSim, fleet
from tests.support.paths import REPO
from wire import STATES


def _generated() -> dict[str, dict[str, Any]]:
    return {p.name: json.loads(p.read_text()) for p in sorted(GENERATED_DIR.glob("*.json"))}


def _panels(board: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    for panel in board["panels"]:
        out.append(panel)
        out.extend(panel.get("panels", []))
    return out


def test_committed_json_is_current(tmp_path: Path) -> None:
    written = write_all(tmp_path)
    committed = sorted(p.name for p in GENERATED_DIR.glob("*.json"))
    assert committed == sorted(p.name for p in written)
    stale = [p.name for p in written if p.read_bytes() != (GENERATED_DIR / p.name).read_bytes()]
    assert stale == [], (
        f"dashboards/generated is stale for {stale}: run `runhours dashboards build` and commit"
    )


def test_build_is_deterministic() -> None:
    first = {name: render(b) for name, b in build_all().items()}
    second = {name: render(b) for name, b in build_all().items()}
    assert first == second
    assert all(text.endswith("}\n") for text in first.values())


def test_cli_build_writes_the_same_bytes(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["dashboards", "build", "--out", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    for name, board in build_all().items():
        assert (tmp_path / "out" / name).read_text() == render(board)


def test_generated_json_loads_as_sdk_models() -> None:
    register_default_plugins()
    register()
    boards = _generated()
    assert set(boards) == {
        "fleet-overview.json",
        "machine-detail.json",
        "usage-billing.json",
        "ingest-health.json",
        "oee-downtime.json",
    }
    for name, raw in boards.items():
        model = Dashboard.from_json(raw)
        assert model.uid == raw["uid"] and model.title and model.panels
        # Loading and saving again gives the same panels, variables and settings: the file
        # holds nothing the SDK model does not know (annotations carry our InfluxQL extra).
        again = json.loads(json.dumps(model, cls=JSONEncoder))
        assert {k: v for k, v in again.items() if k != "annotations"} == {
            k: v for k, v in raw.items() if k != "annotations"
        }, name
        for panel in model.panels or []:
            assert isinstance(panel, Panel), "no rows: every panel is a real panel"
            where = f"{name}: panel {panel.title!r}"
            assert panel.title, where
            assert panel.datasource is not None and panel.datasource.uid == DATASOURCE_UID, where
            assert panel.datasource.type_val == "influxdb", where
            assert panel.field_config.defaults.unit, f"{where} has no unit"
            assert panel.targets, f"{where} has no query"
            for target in panel.targets:
                assert isinstance(target, InfluxQuery), where
                assert target.raw_query and target.query.startswith("SELECT"), where
                # Active alerts: everything up to the range's end, for an alert raised
                # before the range start is still active until it is resolved.
                bounded = "$timeFilter" in target.query or (
                    panel.title == "Active alerts" and "time <= ${__to}ms" in target.query
                )
                assert bounded, f"{where} ignores the time range"


def test_layout_ids_and_uids() -> None:
    boards = _generated()
    uids = [b["uid"] for b in boards.values()]
    assert len(set(uids)) == len(uids)
    for name, board in boards.items():
        panels = _panels(board)
        ids = [p["id"] for p in panels]
        assert ids == list(range(1, len(panels) + 1)), name
        for panel in panels:
            pos = panel["gridPos"]
            assert pos["x"] + pos["w"] <= 24 and pos["h"] > 0, (name, panel["title"])
        names = [v["name"] for v in board["templating"]["list"]]
        assert names == ["site", "line", "machine"], name
    annotations = boards["machine-detail.json"]["annotations"]["list"]
    assert [a["name"] for a in annotations] == ["Alerts"]
    assert annotations[0]["target"]["query"] == annotations[0]["query"]


def test_thresholds_match_the_shipped_alert_rules() -> None:
    """Every threshold rule of examples/rules.toml is drawn on its signal's panel."""
    rules = tomllib.loads((REPO / "examples" / "rules.toml").read_text())["rule"]
    limits: dict[str, set[float]] = {}
    for rule in rules:
        if rule["kind"] == "threshold" and "above" in rule:
            limits.setdefault(rule["value"], set()).add(float(rule["above"]))
    assert limits == {"vibration_mm_s": {2.8, 4.5}, "bearing_temp_c": {90.0, 100.0}}
    for value, above in limits.items():
        assert above <= {level.value for level in THRESHOLDS[value]}, value
    assert [level.value for level in THRESHOLDS["vibration_mm_s"]] == [1.4, 2.8, 4.5]
    machine = _generated()["machine-detail.json"]
    vibration = next(p for p in machine["panels"] if p["title"] == "Vibration velocity (RMS)")
    steps = vibration["fieldConfig"]["defaults"]["thresholds"]["steps"]
    assert [s["value"] for s in steps] == [None, 1.4, 2.8, 4.5]
    assert vibration["fieldConfig"]["defaults"]["custom"]["thresholdsStyle"] == {"mode": "dashed"}


def test_every_simulated_signal_has_a_panel() -> None:
    start = datetime(2026, 3, 2, 6, tzinfo=UTC)
    emitted: set[str] = set()
    for spec in fleet(3, start=start, degrading=0):  # one of each kind
        for reading in MachineSim(spec, start).advance(start + timedelta(hours=1)):
            emitted |= set(reading.sample.values)
    assert emitted == {s.name for s in SIGNALS}
    assert set(STATE_COLORS) == set(STATES)


def test_contract_panels(tmp_path: Path) -> None:
    path = tmp_path / "contracts.toml"
    path.write_text(
        """
[[contract]]
id = "PBH-001"
customer = "Acme"
currency = "EUR"
timezone = "Europe/Berlin"
rate_per_hour = "42.50"
minimum_hours = "100"
[[contract.machine]]
id = "cnc-02"
[[contract.machine]]
id = "cnc-01"
from = 2026-10-01

[[contract]]
id = "PBH-002"
customer = "Beta"
currency = "EUR"
rate_per_hour = "30"
billable_states = ["running", "idle"]
period = "quarter"
[[contract.machine]]
id = "pump.01"

[[contract]]
id = "PBH-003"
customer = "Gamma"
currency = "EUR"
rate_per_hour = "30"
method = "counter"
period = "week"
[[contract.machine]]
id = "comp-01"
"""
    )
    contracts = contract_views(path)
    assert contracts == [
        ContractView(
            "PBH-001", ("cnc-01", "cnc-02"), ("running",), Decimal("100"), "Europe/Berlin"
        ),
        ContractView("PBH-002", ("pump.01",), ("running", "idle"), None, "UTC", "quarter"),
        ContractView("PBH-003", ("comp-01",), ("running",), None, "UTC", "week", "counter"),
    ]
    usage = json.loads(render(build_all(contracts)["usage-billing.json"]))
    titles = [p["title"] for p in usage["panels"]]
    assert titles[-4:] == [
        "Billable hours per contract per day",
        "PBH-001: billable hours this month vs minimum 100 h",
        "PBH-002: billable hours this quarter",
        "PBH-003: billable hours this week",
    ]
    assert [p["timeFrom"] for p in usage["panels"][-3:]] == ["now/M", "now/fQ", "now/w"]
    per_day = usage["panels"][-4]["targets"]
    assert per_day[1]["query"] == (
        'SELECT (sum("running_s") + sum("idle_s")) / 3600 AS "PBH-002" FROM "usage_hourly" '
        'WHERE "machine" =~ /^(pump\\.01)$/ AND $timeFilter GROUP BY time(1d) fill(none) '
        "tz('UTC')"
    )
    assert per_day[2]["query"].startswith('SELECT (sum("counter_s")) / 3600 AS "PBH-003"')


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ('[[contract]]\ncustomer = "x"\n', "contract.0.id: required field is missing"),
        ('[[contract]]\nid = "A"\nminimum_hours = "lots"\n', "minimum_hours (contract 'A')"),
        ('[[contract]]\nid = "A"\nperiod = "year"\n', "period (contract 'A'): Input should be"),
        ('[[contract]]\nid = "A"\n[[contract.machine]]\nname = "x"\n', "machine.0.id"),
        ("[[contract]\n", "not valid TOML"),
    ],
)
def test_bad_contracts_file_names_the_problem(tmp_path: Path, text: str, error: str) -> None:
    path = tmp_path / "contracts.toml"
    path.write_text(text)
    with pytest.raises(ContractsError, match=re.escape(error)):
        contract_views(path)
    result = CliRunner().invoke(
        app, ["dashboards", "build", "--out", str(tmp_path / "out"), "--contracts", str(path)]
    )
    assert result.exit_code == 2
    assert not (tmp_path / "out").exists()
    if "TOML" not in error:  # the reader's field errors say what did not happen here
        assert "invalid contracts file (no dashboards were written)" in " ".join(
            result.output.split()
        )


# -- Grafana's macro expansion ----------------------------------------------------------

T0 = datetime(2026, 3, 2, 5, 0, tzinfo=UTC)
T1 = T0 + timedelta(hours=6)


def test_expand_time_filter_interval_and_range() -> None:
    query = (
        'SELECT mean("v") FROM "telemetry" WHERE $timeFilter AND time > $__from '
        "AND time < ${__to} GROUP BY time($__interval) -- $__interval_ms"
    )
    assert expand(query, start=T0, end=T1, interval=timedelta(seconds=30)) == (
        'SELECT mean("v") FROM "telemetry" WHERE time >= 1772427600000ms and '
        "time <= 1772449200000ms AND time > 1772427600000 AND time < 1772449200000 "
        "GROUP BY time(30s) -- 30000"
    )


def test_expand_variables_like_grafana() -> None:
    query = '"site" =~ /^$site$/ AND "machine" =~ /^${machine}$/ AND "line" = \'[[line]]\''
    variables = {
        "site": Variable(("plant.1",)),  # multi/All: regex-escaped even when single
        "machine": Variable(("cnc-01", "pump/2")),  # several: (a|b)
        "line": Variable(("line-a",), multi=False),  # single-value: as is
    }
    assert expand(query, start=T0, end=T1, interval=timedelta(minutes=1), variables=variables) == (
        '"site" =~ /^plant\\.1$/ AND "machine" =~ /^(cnc-01|pump\\/2)$/ AND "line" = \'line-a\''
    )
    # Unknown names and regex anchors are left alone.
    assert expand("$other $/", start=T0, end=T1, interval=timedelta(seconds=1)) == "$other $/"
    assert escape_regex("a.b(c)|d*") == "a\\.b\\(c\\)\\|d\\*"


def test_interval_rounding_and_panel_ranges() -> None:
    assert grafana_interval(T0, T1) == timedelta(seconds=30)  # 6 h / 1000 = 21.6 s → 30 s
    assert grafana_interval(T0, T1, min_interval="1m") == timedelta(minutes=1)
    assert grafana_interval(T0, T0 + timedelta(days=30)) == timedelta(hours=1)
    assert [format_duration(timedelta(seconds=s)) for s in (60, 90, 3600, 1.5)] == [
        "1m",
        "90s",
        "1h",
        "1500ms",
    ]
    now = datetime(2026, 3, 17, 13, 45, tzinfo=UTC)
    assert panel_range("now/d", T0, now) == (datetime(2026, 3, 17, tzinfo=UTC), now)
    assert panel_range("now/M", T0, now) == (datetime(2026, 3, 1, tzinfo=UTC), now)
    assert panel_range("now/fQ", T0, now) == (datetime(2026, 1, 1, tzinfo=UTC), now)
    assert panel_range("now/w", T0, now) == (datetime(2026, 3, 16, tzinfo=UTC), now)  # Mon
    assert panel_range("7d", T0, now) == (now - timedelta(days=7), now)
    assert panel_range(None, T0, now) == (T0, now)


def test_schema_doc_names_every_schema_constant() -> None:
    import store.schema as schema

    doc = (REPO / "docs" / "schema.md").read_text()
    names = {v for k, v in vars(schema).items() if k.isupper() and isinstance(v, str)}
    names |= {schema.state_seconds_field(state) for state in STATES}
    missing = sorted(name for name in names if f"`{name}`" not in doc)
    assert missing == [], f"docs/schema.md does not document {missing}"


def test_contract_panels_select_site_qualified_machines_by_site(tmp_path: Path) -> None:
    path = tmp_path / "contracts.toml"
    path.write_text(
        '[[contract]]\nid = "PBH-001"\ncustomer = "Acme"\ncurrency = "EUR"\nrate_per_hour = 1\n'
        "minimum_hours = 100.5\n"
        '[[contract.machine]]\nid = "plant2/cnc-01"\n[[contract.machine]]\nid = "cnc-02"\n'
    )
    (view,) = contract_views(path)
    assert view.machines == ("cnc-02", "plant2/cnc-01")
    assert view.minimum_hours == Decimal("100.5")  # an unquoted number, read exactly
    usage = json.loads(render(build_all([view])["usage-billing.json"]))
    query = usage["panels"][-2]["targets"][0]["query"]
    assert (
        """WHERE ("machine" =~ /^(cnc\\-02)$/ OR ("site" = 'plant2' AND "machine" = 'cnc-01')) """
        "AND $timeFilter"
    ) in query
