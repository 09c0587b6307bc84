"""Sites are part of a machine's name: the same id at two sites is two machines, in usage,
rollups and billing; a bare id that exists at two sites is refused; rollups written
before site keys are recomputed."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path

import pytest
from typer.testing import CliRunner

from analytics import rollups
from analytics.billing import BillingError, build_statements, parse_contracts
from analytics.rollups import fleet_usage, read_rollups, rebuild_rollups
from common.settings import RunhoursSettings
from runhours.cli import app
from store import InfluxClient, Point
from store.schema import FIELD_KNOWN_S, USAGE_HOURLY, state_seconds_field
from tests.support.billing import OCTOBER, amounts, bill, contract, machine
from tests.support.telemetry import HOUR, ingest, steady


@pytest.fixture
def two_sites(influx: InfluxClient) -> InfluxClient:
    # cnc-01 at plant1 runs 10 h on 1 October, cnc-01 at plant2 runs 5 h a day later.
    day2 = OCTOBER.start + 24 * HOUR
    ingest(influx, steady("cnc-01", "running", OCTOBER.start, OCTOBER.start + 10 * HOUR))
    ingest(influx, steady("cnc-01", "running", day2, day2 + 5 * HOUR, site="plant2"))
    return influx


def test_the_same_id_at_two_sites_is_two_machines(two_sites: InfluxClient) -> None:
    # Issue case: before, usage filtered by id only and the contract billed 15.0 h = 637.50.
    text = contract(machine("plant1/cnc-01"))
    assert amounts(bill(two_sites, text)) == [
        ("usage", "plant1/cnc-01", "10.0", "42.50", "425.00"),
    ]
    assert amounts(bill(two_sites, contract(machine("plant2/cnc-01")))) == [
        ("usage", "plant2/cnc-01", "5.0", "42.50", "212.50"),
    ]
    rows = fleet_usage(two_sites, OCTOBER.start, OCTOBER.end)
    assert [(u.site, u.machine, u.running_seconds / 3600) for u in rows] == [
        ("plant1", "cnc-01", 10.0),
        ("plant2", "cnc-01", 5.0),
    ]
    # The rollups hold one series per site.
    series = two_sites.query_series(f'SHOW SERIES FROM "{USAGE_HOURLY}"')
    assert sorted(row[0] for s in series for row in s.values) == [
        "usage_hourly,line=line-a,machine=cnc-01,site=plant1",
        "usage_hourly,line=line-a,machine=cnc-01,site=plant2",
    ]


def test_a_bare_id_at_two_sites_is_an_error_naming_both(two_sites: InfluxClient) -> None:
    contracts = parse_contracts(tomllib.loads(contract(machine("cnc-01"))))
    message = (
        "contract PBH-001: machine 'cnc-01' exists at 2 sites (plant1, plant2): name one of "
        "them as plant1/cnc-01 or plant2/cnc-01"
    )
    with pytest.raises(BillingError, match=message.replace("(", r"\(").replace(")", r"\)")):
        build_statements(two_sites, contracts, "2026-10")
    with pytest.raises(ValueError, match="exists at 2 sites"):
        fleet_usage(two_sites, OCTOBER.start, OCTOBER.end, machines=["cnc-01"])


def test_usage_and_export_commands_name_both_sites(
    two_sites: InfluxClient, settings: RunhoursSettings, tmp_path: Path
) -> None:
    config = tmp_path / "runhours.toml"
    config.write_text(
        f'influx_url = "{settings.influx_url}"\ninflux_db = "{settings.influx_db}"\n'
        f'data_dir = "{tmp_path / "var"}"\n'
    )
    base = ["usage", "--from", "2026-10-01", "--to", "2026-10-03", "--tz", "Europe/Berlin",
            "--config", str(config), "--format", "json"]  # fmt: skip
    result = CliRunner().invoke(app, [*base, "--machine", "cnc-01"])
    assert result.exit_code == 2
    assert "machine 'cnc-01' exists at 2 sites (plant1, plant2)" in " ".join(result.output.split())
    result = CliRunner().invoke(app, [*base, "--machine", "plant2/cnc-01"])
    assert result.exit_code == 0, result.output
    assert [(r["site"], r["state_seconds"]["running"]) for r in json.loads(result.stdout)] == [
        ("plant2", 5 * 3600.0)
    ]
    contracts = tmp_path / "contracts.toml"
    contracts.write_text(contract(machine("cnc-01")))
    result = CliRunner().invoke(
        app,
        ["billing", "export", "--period", "2026-10", "--contracts", str(contracts),
         "--config", str(config)],
    )  # fmt: skip
    assert result.exit_code == 2
    assert "name one of them as plant1/cnc-01 or plant2/cnc-01" in " ".join(result.output.split())


def test_rollups_of_the_old_version_are_recomputed_when_read(two_sites: InfluxClient) -> None:
    # What runhours wrote before site keys: one series per id, tagged with the first
    # site, holding both sites' hours merged, without gap fields or a version.
    old = [
        Point(
            USAGE_HOURLY,
            {"site": "plant1", "line": "line-a", "machine": "cnc-01"},
            {state_seconds_field("running"): 3600.0, FIELD_KNOWN_S: 3600.0},
            (OCTOBER.start_ms + k * 3_600_000),
        )
        for k in [*range(10), *range(24, 29)]
    ]
    two_sites.write(old)
    edges = [OCTOBER.start_ms, OCTOBER.end_ms]
    with pytest.raises(RuntimeError, match="rollups of an older runhours for cnc-01"):
        read_rollups(two_sites, ["plant1/cnc-01"], edges)
    # Billing recomputes the stale hours (for both sites) and bills each site's own hours.
    contracts = parse_contracts(tomllib.loads(contract(machine("plant1/cnc-01"))))
    (statement,) = build_statements(two_sites, contracts, "2026-10")
    assert amounts(statement) == [("usage", "plant1/cnc-01", "10.0", "42.50", "425.00")]
    rows = two_sites.query_rows(
        f'SELECT count("{FIELD_KNOWN_S}") AS n, count("rollup_version") AS v '
        f'FROM "{USAGE_HOURLY}" GROUP BY "site"'
    )
    # The recomputed range is the stale rows' hours: all 29 hours of both sites.
    assert [(r["site"], r["n"], r["v"]) for r in rows] == [("plant1", 29, 29), ("plant2", 29, 29)]
    assert read_rollups(two_sites, ["plant2/cnc-01"], edges)["plant2/cnc-01"].state_ms.sum() == (
        5 * 3_600_000
    )
    assert rollups.ROLLUP_VERSION == 2


def test_rebuild_rollups_takes_site_qualified_names(two_sites: InfluxClient) -> None:
    assert (
        rebuild_rollups(two_sites, OCTOBER.start, OCTOBER.start + 48 * HOUR, ["plant2/cnc-01"])
        == 48
    )
    with pytest.raises(ValueError, match="exists at 2 sites"):
        rebuild_rollups(two_sites, OCTOBER.start, OCTOBER.start + HOUR, ["cnc-01"])
