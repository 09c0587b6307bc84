"""`runhours usage`: JSON, CSV and table output over the rollups (refreshed by the command)."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from common.settings import RunhoursSettings
from runhours.cli import app
from store import InfluxClient
from tests.support.telemetry import MINUTE, ingest, sample, steady, utc


def test_usage_json_csv_and_table(
    settings: RunhoursSettings, influx: InfluxClient, tmp_path: Path
) -> None:
    config = tmp_path / "runhours.toml"
    config.write_text(
        f'influx_url = "{settings.influx_url}"\ninflux_db = "{settings.influx_db}"\n'
        f'data_dir = "{tmp_path / "var"}"\n'
    )
    t0 = utc(2026, 10, 5, 6)
    # cnc-01: running 06:00-06:45 with its hour meter, then idle; pump-01: 06:30-06:40 fault.
    points = [sample("cnc-01", t0, "running", counter=100.0)]
    points += steady("cnc-01", "running", t0 + 5 * MINUTE, t0 + 45 * MINUTE)
    points += [sample("cnc-01", t0 + 45 * MINUTE, "idle", counter=2800.0)]
    points += steady("cnc-01", "idle", t0 + 50 * MINUTE, t0 + 125 * MINUTE)
    points += steady("pump-01", "fault", t0 + 30 * MINUTE, t0 + 40 * MINUTE)
    ingest(influx, points)
    base = ["usage", "--from", "2026-10-05T08:00:00+02:00", "--to", "2026-10-05T10:00:00+02:00",
            "--tz", "Europe/Berlin", "--by", "hour", "--config", str(config)]  # fmt: skip

    result = CliRunner().invoke(app, [*base, "--format", "json"])
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)
    assert [(r["machine"], r["start"]) for r in rows] == [
        ("cnc-01", "2026-10-05T08:00:00+02:00"),
        ("cnc-01", "2026-10-05T09:00:00+02:00"),
        ("pump-01", "2026-10-05T08:00:00+02:00"),
        ("pump-01", "2026-10-05T09:00:00+02:00"),
    ]
    assert rows[0] == {
        "site": "plant1",
        "machine": "cnc-01",
        "start": "2026-10-05T08:00:00+02:00",
        "end": "2026-10-05T09:00:00+02:00",
        "state_seconds": {
            "off": 0.0,
            "idle": 900.0,
            "running": 2700.0,
            "fault": 0.0,
            "maintenance": 0.0,
        },
        "known_seconds": 3600.0,
        "coverage": 1.0,
        "gaps": 0,
        "counter_seconds": 2700.0,
        "counter_reset": False,
        "counter_mismatch": False,
        "counter_anomalies": [],
    }
    # 09:00-10:00 local: idle throughout, and no hour-meter reading in it.
    assert rows[1]["state_seconds"]["idle"] == 3600.0 and rows[1]["counter_seconds"] is None
    # pump-01: fault samples at 08:30 and 08:35 local; the last holds 5 min, to 08:40.
    assert rows[2]["state_seconds"]["fault"] == 600.0
    assert rows[2]["coverage"] == 0.166667 and rows[3]["known_seconds"] == 0.0

    result = CliRunner().invoke(app, [*base, "--format", "csv", "--machine", "pump-01"])
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines()[:2] == [
        "site,machine,start,end,off_s,idle_s,running_s,fault_s,maintenance_s,known_s,coverage,"
        "gaps,counter_s,counter_reset,counter_mismatch,counter_anomalies",
        "plant1,pump-01,2026-10-05T08:00:00+02:00,2026-10-05T09:00:00+02:00,0.0,0.0,0.0,600.0,"
        "0.0,600.0,0.166667,2,,False,False,",
    ]

    result = CliRunner().invoke(app, [*base, "--machine", "cnc-01"])
    assert result.exit_code == 0, result.output
    assert "cnc-01" in result.stdout and "45m 00s" in result.stdout  # 2700 s running

    bad = CliRunner().invoke(app, [*base[:2], "yesterday", *base[3:]])
    assert bad.exit_code == 2
    assert "time 'yesterday' not understood" in bad.output
