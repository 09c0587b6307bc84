"""`runhours billing explain`: the day rows add up exactly to every statement line.

A simulated fleet (the demo's machines) for the ISO week 2026-W43, which holds the
Berlin DST change, written as the ingest would, with a sensor blackout (gaps) and an
hour meter that restores a stale value (a glitch). Every machine's lines are explained
for the demo's view of the week (a range priced as one period) and for October 2026 (a
month with a 25-hour day), from the rollups and from raw samples.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import pytest
from typer.testing import CliRunner

from analytics.billing import billing_summary, load_contracts
from analytics.billing.explain import explain_line, explanation_json
from analytics.periods import calendar_period, custom_period
from analytics.rollups import rebuild_rollups
from common.settings import RunhoursSettings
from runhours.cli import app
from runhours.services import LocalServices
from simulators import MachineSim, fleet
from store import InfluxClient
from store.schema import FIELD_STATE, TELEMETRY
from tests.support.telemetry import BERLIN, berlin
from wire import to_epoch_ms

START = berlin(2026, 10, 19)  # Monday of 2026-W43; Sunday 25 October has 25 hours
END = START + timedelta(days=7)
BLACKOUT = (berlin(2026, 10, 21, 10), berlin(2026, 10, 21, 10, 40))  # 40 min > max_gap
GLITCH_AT = berlin(2026, 10, 22, 12)  # pump-01's meter restores a value 10.5 s stale

CONTRACTS = """
[[contract]]
id = "PBH-001"
customer = "Acme Metal Works"
currency = "EUR"
timezone = "Europe/Berlin"
rate_per_hour = "42.50"
minimum_hours = "400"
proration = "daily"
[[contract.machine]]
id = "cnc-01"
[[contract.machine]]
id = "plant1/cnc-02"
to = 2026-10-23

[[contract]]
id = "PBH-002"
customer = "Nordwind Pumpen GmbH"
currency = "EUR"
timezone = "Europe/Berlin"
method = "counter"
allowance_hours = "40"
overuse_multiplier = "1.25"
rounding_hours = "0.25"
rounding_mode = "up"
[[contract.tier]]
up_to_hours = "30"
rate_per_hour = "18.00"
[[contract.tier]]
rate_per_hour = "15.00"
[[contract.machine]]
id = "pump-01"
[[contract.machine]]
id = "comp-01"
"""


def write_week(influx: InfluxClient) -> None:
    specs = fleet(6, start=START)
    specs = [replace(s, blackouts=(BLACKOUT,)) if s.machine == "cnc-01" else s for s in specs]
    glitch_ms = to_epoch_ms(GLITCH_AT)
    for spec in specs:
        sim = MachineSim(spec, START, sample_interval_s=10)
        prefix = f"{TELEMETRY},line={spec.line},machine={spec.machine},site={spec.site} "
        lines = []
        for reading in sim.advance(END):
            ts = to_epoch_ms(reading.sample.ts)
            fields = [f"{k}={float(v)!r}" for k, v in reading.sample.values.items()]
            if reading.sample.state is not None:
                fields.append(f'{FIELD_STATE}="{reading.sample.state}"')
            for name, value in reading.counters.items():
                # From GLITCH_AT on, pump-01's meter counts on from a value 10.5 s stale.
                stale = spec.machine == "pump-01" and ts >= glitch_ms
                fields.append(f"{name}={float(value) - (10.5 if stale else 0.0)!r}")
            lines.append(f"{prefix}{','.join(fields)} {ts}")
        for i in range(0, len(lines), 50_000):
            influx.write_lines("\n".join(lines[i : i + 50_000]).encode())


@pytest.fixture(scope="module")
def week(
    services: LocalServices, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[InfluxClient]:
    database = f"t_explain_{tmp_path_factory.getbasetemp().name[-6:]}"
    with InfluxClient(services.influx_url, database) as client:
        client.ensure_database()
        write_week(client)
        rebuild_rollups(client, START - timedelta(days=1), END + timedelta(days=1))
        yield client
        client.query(f'DROP DATABASE "{database}"', epoch=None)


@pytest.fixture(scope="module")
def contracts_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("explain") / "contracts.toml"
    path.write_text(CONTRACTS)
    return path


@pytest.mark.parametrize("from_raw", [False, True])
def test_explain_adds_up_for_the_demo_week_and_a_dst_month(
    week: InfluxClient, contracts_file: Path, from_raw: bool
) -> None:
    contracts = load_contracts(contracts_file)
    summary = {s.contract_id: s for s in billing_summary(week, contracts_file, START, END)}
    explained = 0
    for contract in contracts:
        for period in (
            custom_period(START, END, contract.zone),  # the demo's week, priced as one period
            calendar_period("2026-10", contract.zone),
        ):
            for item in contract.machine:
                x = explain_line(week, contract, period, item.id, from_raw=from_raw)
                assert [c.figure for c in x.checks if not c.equal] == []
                explained += 1
                # The day rows sum exactly, in milliseconds, to the statement's figure.
                metered = sum(
                    (d.counter_ms or 0) if contract.method == "counter" else d.billable_ms
                    for d in x.days
                )
                meter = x.meter
                assert metered == (
                    meter.counter_ms if contract.method == "counter" else meter.billable_state_ms
                )
                if period.kind == "custom":
                    lines = [ln for ln in summary[contract.id].lines if ln.machine == item.id]
                    assert list(x.lines) == lines  # the demo summary's very lines
                    long_day = [d for d in x.days if d.end_ms - d.start_ms == 25 * 3_600_000]
                    assert len(long_day) == (1 if item.id != "plant1/cnc-02" else 0)
    assert explained == 8


def test_explain_shows_gaps_anomalies_bands_and_true_up(
    week: InfluxClient, contracts_file: Path
) -> None:
    by_id = {c.id: c for c in load_contracts(contracts_file)}
    october = calendar_period("2026-10", BERLIN)
    cnc = explanation_json(explain_line(week, by_id["PBH-001"], october, "cnc-01"))
    assert cnc["site"] == "plant1" and cnc["machine"] == "cnc-01"
    blackout = [g for g in cnc["gaps"] if g["start"].startswith("2026-10-21")]
    # The last sample before the blackout (09:59:50) holds 5 min: 35 min 10 s unknown.
    assert blackout == [
        {"start": "2026-10-21T10:04:50+02:00", "end": "2026-10-21T10:40:00+02:00",
         "seconds": "2110.000"},
    ]  # fmt: skip
    assert len(cnc["gaps"]) == 3  # before the week, the blackout, after the week
    day = next(d for d in cnc["days"] if d["start"] == "2026-10-21T00:00:00+02:00")
    assert day["gaps"] == blackout and day["unknown_seconds"] == "2110.000"
    assert day["raw_samples"] > 8000
    long_day = next(d for d in cnc["days"] if d["start"] == "2026-10-25T00:00:00+02:00")
    assert long_day["end"] == "2026-10-26T00:00:00+01:00"
    # The true-up is per contract: 400 h × 31/31 days (cnc-01 all month), less both machines.
    true_up = cnc["true_up"]
    assert (true_up["days_covered"], true_up["days"], true_up["applies_hours"]) == (31, 31, "400")
    assert true_up["line"]["kind"] == "true_up"
    assert cnc["lines"][0]["gaps"] == 3

    pump = explanation_json(explain_line(week, by_id["PBH-002"], october, "pump-01"))
    (glitch,) = pump["counter_anomalies"]
    assert glitch["kind"] == "glitch" and glitch["at"] == "2026-10-22T12:00:00+02:00"
    assert glitch["billed_seconds"] == "0.000"
    assert pump["lines"][0]["counter_anomalies"][0].startswith("2026-10-22T12:00:00+02:00 glitch")
    assert [b["band"] for b in pump["bands"]][:1] == ["0-30"]
    assert all(c["equal"] for c in pump["checks"])


def test_explain_command_table_and_json(
    week: InfluxClient, contracts_file: Path, settings: RunhoursSettings, tmp_path: Path
) -> None:
    config = tmp_path / "runhours.toml"
    config.write_text(
        f'influx_url = "{settings.influx_url}"\ninflux_db = "{week.database}"\n'
        f'data_dir = "{tmp_path / "var"}"\n'
    )
    base = ["billing", "explain", "--contract", "PBH-002", "--contracts", str(contracts_file),
            "--config", str(config), "--machine", "plant1/pump-01"]  # fmt: skip
    result = CliRunner().invoke(app, [*base, "--period", "2026-10", "--format", "json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["machine"] == "pump-01" and all(c["equal"] for c in data["checks"])
    result = CliRunner().invoke(
        app, [*base, "--from", "2026-10-19", "--to", "2026-10-26"], terminal_width=200
    )
    assert result.exit_code == 0, result.output
    assert "the days add up to the statement line" in result.stdout
    assert "✗" not in result.stdout and "glitch" in result.stdout
    wrong = CliRunner().invoke(app, [*base[:-2], "--machine", "cnc-01", "--period", "2026-10"])
    assert wrong.exit_code == 2
    assert "PBH-002 has no machine 'cnc-01' under contract" in " ".join(wrong.output.split())
