"""`runhours billing export` end to end: exact bytes, finalize, late data, bad contracts.

The data goes in as the ingest writes it (telemetry + ``ingest_touched`` markers); the
command refreshes the rollups itself, so these also check the incremental path.
"""

from __future__ import annotations

import json
import sqlite3
from datetime import datetime
from decimal import Decimal
from pathlib import Path

import pytest
from typer.testing import CliRunner

from analytics.billing import Ledger, Statement, default_ledger
from common.settings import RunhoursSettings
from runhours.cli import app
from store import InfluxClient
from tests.support.telemetry import HOUR, MINUTE, berlin, ingest, sample, steady

CONTRACTS = """
[[contract]]
id = "PBH-001"
customer = "Acme Metal Works"
currency = "EUR"
timezone = "Europe/Berlin"
rate_per_hour = "42.50"
minimum_hours = "10"
[[contract.machine]]
id = "cnc-01"
[[contract.machine]]
id = "cnc-02"

[[contract]]
id = "PBH-002"
customer = "Nordwind Pumpen GmbH"
currency = "EUR"
timezone = "Europe/Berlin"
rate_per_hour = "18.00"
[[contract.machine]]
id = "pump-01"
"""

# cnc-01 runs 08:00-12:00 on 5 Oct, cnc-02 runs 08:00-09:30, pump-01 runs 06:00-07:00:
# each has two gaps in the month (before it ran and after), the true-up line their sum.
EXPECTED_CSV = """\
contract_id,customer,currency,period_start,period_end,line_id,kind,machine,metered_hours,billable_hours,rate,amount,coverage_pct,method,gaps,counter_anomalies
PBH-001,Acme Metal Works,EUR,2026-10-01T00:00:00+02:00,2026-11-01T00:00:00+01:00,{u1},usage,cnc-01,4.0000,4.0,42.50,170.00,0.54,state,2,
PBH-001,Acme Metal Works,EUR,2026-10-01T00:00:00+02:00,2026-11-01T00:00:00+01:00,{u2},usage,cnc-02,1.5000,1.5,42.50,63.75,0.21,state,2,
PBH-001,Acme Metal Works,EUR,2026-10-01T00:00:00+02:00,2026-11-01T00:00:00+01:00,{t},true_up,,0.0000,4.5,42.50,191.25,0.38,minimum,4,
PBH-001,Acme Metal Works,EUR,2026-10-01T00:00:00+02:00,2026-11-01T00:00:00+01:00,,total,,5.5000,10.0,,425.00,,,,
PBH-002,Nordwind Pumpen GmbH,EUR,2026-10-01T00:00:00+02:00,2026-11-01T00:00:00+01:00,{p},usage,pump-01,1.0000,1.0,18.00,18.00,0.14,state,2,
PBH-002,Nordwind Pumpen GmbH,EUR,2026-10-01T00:00:00+02:00,2026-11-01T00:00:00+01:00,,total,,1.0000,1.0,,18.00,,,,
"""


@pytest.fixture
def setup(settings: RunhoursSettings, influx: InfluxClient, tmp_path: Path) -> dict[str, Path]:
    config = tmp_path / "runhours.toml"
    config.write_text(
        f'influx_url = "{settings.influx_url}"\ninflux_db = "{settings.influx_db}"\n'
        f'data_dir = "{tmp_path / "var"}"\n'
    )
    contracts = tmp_path / "contracts.toml"
    contracts.write_text(CONTRACTS)
    day = berlin(2026, 10, 5)
    points = steady("cnc-01", "running", day + 8 * HOUR, day + 12 * HOUR)
    points += [sample("cnc-01", day + 12 * HOUR, "idle")]
    points += steady("cnc-02", "running", day + 8 * HOUR, day + 9 * HOUR + 30 * MINUTE)
    points += [sample("cnc-02", day + 9 * HOUR + 30 * MINUTE, "off")]
    points += steady("pump-01", "running", day + 6 * HOUR, day + 7 * HOUR)
    points += [sample("pump-01", day + 7 * HOUR, "off")]
    ingest(influx, points)
    return {"config": config, "contracts": contracts, "data": tmp_path / "var"}


def run(setup: dict[str, Path], *args: str) -> str:
    result = CliRunner().invoke(
        app,
        ["billing", "export", "--period", "2026-10", "--contracts", str(setup["contracts"]),
         "--config", str(setup["config"]), *args],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    return result.output


def test_csv_export_is_exactly_as_specified_and_byte_identical(
    setup: dict[str, Path], tmp_path: Path
) -> None:
    first, second, raw = tmp_path / "a.csv", tmp_path / "b.csv", tmp_path / "raw.csv"
    run(setup, "--format", "csv", "--out", str(first))
    run(setup, "--format", "csv", "--out", str(second))
    run(setup, "--format", "csv", "--out", str(raw), "--from-raw")
    data = first.read_bytes()
    assert data == second.read_bytes() == raw.read_bytes()
    rows = data.decode().splitlines()
    ids = {r.split(",")[7] or r.split(",")[6]: r.split(",")[5] for r in rows[1:]}
    # cnc-01: 4 h running + 5 min idle known in a 745 h month = 0.548…% → 0.54 (rounded down)
    assert data.decode() == EXPECTED_CSV.format(
        u1=ids["cnc-01"], u2=ids["cnc-02"], t=ids["true_up"], p=ids["pump-01"]
    )
    assert all(len(i) == 16 for i in ids.values() if i)


def test_json_export_has_the_documented_shape(setup: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "billing.json"
    run(setup, "--format", "json", "--out", str(out))
    statements = json.loads(out.read_text())
    assert [s["contract_id"] for s in statements] == ["PBH-001", "PBH-002"]
    first = statements[0]
    assert list(first) == [
        "contract_id", "customer", "currency", "period_start", "period_end", "lines", "total",
    ]  # fmt: skip
    assert list(first["lines"][0]) == [
        "id", "kind", "machine", "metered_hours", "billable_hours", "rate", "amount",
        "coverage", "method", "gaps", "counter_anomalies",
    ]  # fmt: skip
    assert first["total"] == "425.00"
    assert first["lines"][2] == {
        "id": first["lines"][2]["id"],
        "kind": "true_up",
        "machine": "",
        "metered_hours": "0.0000",
        "billable_hours": "4.5",
        "rate": "42.50",
        "amount": "191.25",
        "coverage": "0.38",
        "method": "minimum",
        "gaps": 4,
        "counter_anomalies": [],
    }


def test_late_data_after_finalize_yields_adjustment_lines(
    setup: dict[str, Path], influx: InfluxClient, tmp_path: Path
) -> None:
    issued = tmp_path / "issued.json"
    output = run(setup, "--format", "json", "--out", str(issued), "--finalize")
    assert "finalized PBH-001 revision 1: 3 line(s), 425.00 EUR" in output
    before = json.loads(issued.read_text())

    # Nothing changed: the export of the finalized period is byte-identical.
    again = tmp_path / "again.json"
    run(setup, "--format", "json", "--out", str(again))
    assert again.read_bytes() == issued.read_bytes()

    # Late data: cnc-02 also ran 18:00-21:00 on 6 Oct (replayed from an edge buffer), and
    # pump-01's fault hour turns out to be running.
    day = berlin(2026, 10, 6)
    late = steady("cnc-02", "running", day + 18 * HOUR, day + 21 * HOUR)
    late += [sample("cnc-02", day + 21 * HOUR, "off")]
    late += steady("pump-01", "running", day + 6 * HOUR, day + 7 * HOUR)
    late += [sample("pump-01", day + 7 * HOUR, "off")]
    ingest(influx, late)

    restated = tmp_path / "restated.json"
    output = run(setup, "--format", "json", "--out", str(restated))
    assert "finalized before; late data changed it" in output
    after = json.loads(restated.read_text())
    for old, new in zip(before, after, strict=True):
        # The issued lines are repeated unchanged, adjustments follow.
        assert new["lines"][: len(old["lines"])] == old["lines"]
    adjustments = {
        s["contract_id"]: [(x["kind"], x["machine"], x["billable_hours"], x["amount"])
                           for x in s["lines"] if x["kind"] == "adjustment"]
        for s in after
    }  # fmt: skip
    # PBH-001: cnc-02 1.5 h → 4.5 h (+3.0 h = +127.50); usage is now 8.5 h, so the true-up
    # falls from 4.5 h to 1.5 h (-3.0 h = -127.50). PBH-002: pump-01 +1.0 h = +18.00.
    assert adjustments == {
        "PBH-001": [
            ("adjustment", "", "-3.0", "-127.50"),
            ("adjustment", "cnc-02", "3.0", "127.50"),
        ],
        "PBH-002": [("adjustment", "pump-01", "1.0", "18.00")],
    }
    for old, new in zip(before, after, strict=True):
        change = Decimal(new["total"]) - Decimal(old["total"])
        assert sum(Decimal(a[3]) for a in adjustments[new["contract_id"]]) == change
    assert [s["total"] for s in after] == ["425.00", "36.00"]

    # Finalizing the restatement issues the adjustments as revision 2; then it is stable.
    final = tmp_path / "final.json"
    output = run(setup, "--format", "json", "--out", str(final), "--finalize")
    assert "finalized PBH-002 revision 2: 1 line(s), 18.00 EUR" in output
    assert final.read_bytes() == restated.read_bytes()
    later = tmp_path / "later.json"
    run(setup, "--format", "json", "--out", str(later))
    assert later.read_bytes() == final.read_bytes()
    revisions = Ledger(default_ledger(setup["data"])).revisions()
    assert [(r.contract_id, r.revision, str(r.total)) for r in revisions] == [
        ("PBH-001", 1, "425.00"),
        ("PBH-002", 1, "18.00"),
        ("PBH-001", 2, "0.00"),
        ("PBH-002", 2, "18.00"),
    ]


def test_a_malformed_contracts_file_exports_nothing(setup: dict[str, Path], tmp_path: Path) -> None:
    setup["contracts"].write_text(CONTRACTS.replace('rate_per_hour = "18.00"', 'rate = "18.00"'))
    out = tmp_path / "never.csv"
    result = CliRunner().invoke(
        app,
        ["billing", "export", "--period", "2026-10", "--contracts", str(setup["contracts"]),
         "--config", str(setup["config"]), "--out", str(out), "--finalize"],
    )  # fmt: skip
    assert result.exit_code == 2
    message = result.output.replace("\n", " ")  # the console wraps long lines
    assert "invalid contracts file (nothing was exported)" in message
    assert "contract.1.rate (contract 'PBH-002'): unknown field" in message
    assert not out.exists()
    assert not default_ledger(setup["data"]).exists()


def test_finalizing_a_period_that_has_not_ended_is_refused(setup: dict[str, Path]) -> None:
    result = CliRunner().invoke(
        app,
        ["billing", "export", "--period", "2099-01", "--contracts", str(setup["contracts"]),
         "--config", str(setup["config"]), "--finalize"],
    )  # fmt: skip
    assert result.exit_code == 2
    assert "finalize it after it has ended" in result.output.replace("\n", " ")


def test_check_and_rebuild_rollups_commands(setup: dict[str, Path]) -> None:
    checked = CliRunner().invoke(app, ["billing", "check", "--contracts", str(setup["contracts"])])
    assert checked.exit_code == 0, checked.output
    assert "PBH-001" in checked.output and "cnc-01, cnc-02" in checked.output
    rebuilt = CliRunner().invoke(
        app,
        ["billing", "rebuild-rollups", "--from", "2026-10-05", "--to", "2026-10-06",
         "--tz", "Europe/Berlin", "--config", str(setup["config"])],
    )  # fmt: skip
    assert rebuilt.exit_code == 0, rebuilt.output
    assert "rebuilt 72 machine-hours" in rebuilt.output  # 3 machines × 24 local hours


def test_an_undeliverable_export_is_not_recorded_as_finalized(
    setup: dict[str, Path], tmp_path: Path
) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    out = blocker / "statement.json"  # its "directory" is a file: the write fails
    result = CliRunner().invoke(
        app,
        ["billing", "export", "--period", "2026-10", "--contracts", str(setup["contracts"]),
         "--config", str(setup["config"]), "--format", "json", "--out", str(out), "--finalize"],
    )  # fmt: skip
    assert result.exit_code == 2
    assert not out.exists()
    ledger = default_ledger(setup["data"])
    assert not ledger.exists() or Ledger(ledger).revisions() == []


def test_a_ledger_written_before_gap_counts_gains_the_columns(tmp_path: Path) -> None:
    # A ledger in the format before lines carried gaps and hour-meter anomalies.
    start, end = "2026-10-01T00:00:00+02:00", "2026-11-01T00:00:00+01:00"
    path = tmp_path / "ledger.sqlite3"
    with sqlite3.connect(path) as db:
        db.executescript(
            "CREATE TABLE revision (contract_id TEXT NOT NULL, period_start TEXT NOT NULL, "
            "period_end TEXT NOT NULL, revision INTEGER NOT NULL, issued_at TEXT NOT NULL, "
            "currency TEXT NOT NULL, total TEXT NOT NULL, "
            "PRIMARY KEY (contract_id, period_start, period_end, revision));"
            "CREATE TABLE line (contract_id TEXT NOT NULL, period_start TEXT NOT NULL, "
            "period_end TEXT NOT NULL, revision INTEGER NOT NULL, seq INTEGER NOT NULL, "
            "id TEXT NOT NULL, kind TEXT NOT NULL, machine TEXT NOT NULL, "
            "metered_hours TEXT NOT NULL, billable_hours TEXT NOT NULL, rate TEXT NOT NULL, "
            "amount TEXT NOT NULL, coverage TEXT NOT NULL, method TEXT NOT NULL, "
            "key TEXT NOT NULL, PRIMARY KEY (contract_id, period_start, period_end, revision, seq));"
        )
        db.execute(
            "INSERT INTO revision VALUES ('PBH-001', ?, ?, 1, 'x', 'EUR', '170.00')", (start, end)
        )
        db.execute(
            "INSERT INTO line VALUES ('PBH-001', ?, ?, 1, 0, 'e95c', 'usage', 'cnc-01', '4.0000', "
            "'4.0', '42.50', '170.00', '0.54', 'state', 'usage|cnc-01|0-')",
            (start, end),
        )
    db.close()
    statement = Statement(
        "PBH-001", "Acme", "EUR", datetime.fromisoformat(start), datetime.fromisoformat(end), ()
    )
    revisions, [line] = Ledger(path).issued(statement)
    assert (revisions, line.machine, line.amount) == (1, "cnc-01", Decimal("170.00"))
    assert (line.gaps, line.counter_anomalies) == (0, ())  # issued without them
