"""The README's entry points: `runhours services` and `runhours demo`, run as a user would."""

from __future__ import annotations

import csv
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from common.settings import RunhoursSettings
from runhours.services import LocalServices, free_port
from tests.support.paths import REPO


def runhours(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "runhours", *args],
        cwd=REPO,
        env={**os.environ, "COLUMNS": "200", **(env or {})},
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.mark.services
def test_services_up_status_down(tmp_path: Path) -> None:
    ports = ["--mqtt-port", str(free_port()), "--influx-port", str(free_port())]
    env = {"RUNHOURS_DATA_DIR": str(tmp_path)}
    try:
        up = runhours("services", "up", *ports, env=env)
        assert up.returncode == 0, up.stderr
        status = runhours("services", "status", *ports, env=env)
        assert status.returncode == 0
        assert len(re.findall(r"\byes\b", status.stdout)) == 2
        pair = LocalServices(tmp_path / "services", int(ports[1]), int(ports[3]))
        assert all(ready for _, ready in pair.status().values())
    finally:
        down = runhours("services", "down", *ports, env=env)
    assert down.returncode == 0
    assert runhours("services", "status", *ports, env=env).returncode == 1
    assert not any(ready for _, ready in pair.status().values())


def test_services_up_names_the_busy_port(services: LocalServices, tmp_path: Path) -> None:
    # Our session broker holds this port; a second broker must not silently share it.
    result = runhours(
        "services", "up", "--mqtt-port", str(services.mosquitto.port),
        "--influx-port", str(free_port()), env={"RUNHOURS_DATA_DIR": str(tmp_path)},
    )  # fmt: skip
    runhours("services", "down", env={"RUNHOURS_DATA_DIR": str(tmp_path)})
    assert result.returncode == 2
    assert f"port {services.mosquitto.port}" in result.stderr


def test_demo_publishes_stores_bills_and_alerts(settings: RunhoursSettings) -> None:
    env = {
        "RUNHOURS_MQTT_URL": settings.mqtt_url,
        "RUNHOURS_INFLUX_URL": settings.influx_url,
        "RUNHOURS_INFLUX_DB": settings.influx_db,
        "RUNHOURS_DATA_DIR": str(settings.data_dir),
    }
    result = runhours("demo", "--machines", "4", "--days", "2", "--start", "2026-03-02", env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    out = result.stdout
    published, stored = re.search(r"^total\s+([\d,]+)\s+([\d,]+)", out, re.M).groups()  # type: ignore[union-attr]
    assert published == stored and int(published.replace(",", "")) > 4 * 2 * 8640
    assert "lost: 0" in out
    assert "PBH-001" in out and "PBH-002" in out
    with (settings.data_dir / "demo" / "billing-week.csv").open() as exported:
        rows = list(csv.DictReader(exported))
    # Every contract machine gets a line; only the 4 simulated ones have data behind it.
    metered = {r["machine"] for r in rows if r["kind"] == "usage" and r["coverage_pct"] != "0.00"}
    assert metered == {"cnc-01", "cnc-02", "pump-01", "comp-01"}
    assert "alerts raised over the week" in out
