"""`runhours doctor` against real brokers: our configured Mosquitto keeps a burst for an
offline session; a stock one (max_queued_messages 1000) is caught before it drops data."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from common.settings import RunhoursSettings
from ingest import IngestService, IngestSettings
from runhours.cli import app as cli
from runhours.services import LocalServices, free_port
from store import InfluxClient
from tests.support.faults import StockMosquitto


def _doctor(settings: RunhoursSettings, *args: str) -> tuple[int, str]:
    env = {
        "RUNHOURS_MQTT_URL": settings.mqtt_url,
        "RUNHOURS_INFLUX_URL": settings.influx_url,
        "RUNHOURS_INFLUX_DB": settings.influx_db,
        "COLUMNS": "250",
    }
    result = CliRunner().invoke(cli, ["doctor", *args], env=env)
    return result.exit_code, result.output


def test_doctor_passes_a_healthy_deployment_and_names_a_missing_ingest(
    settings: RunhoursSettings, influx: InfluxClient, test_id: str
) -> None:
    _, output = _doctor(settings)
    assert "kept all 5000 messages for an offline session" in output
    assert "InfluxDB" in output and "broker" in output
    ingest = IngestService(IngestSettings.from_base(settings, client_id=f"doctor-{test_id}"))
    with ingest:
        _, output = _doctor(settings, "--burst", "0")
    assert f"online: doctor-{test_id} (site +)" in output, output
    assert "kept all" not in output  # --burst 0 skips the probe


@pytest.mark.services
def test_doctor_catches_a_broker_queue_limit_before_it_drops_data(
    tmp_path: Path, test_id: str
) -> None:
    pair = LocalServices(tmp_path / "stock", mqtt_port=free_port(), influx_port=free_port())
    pair.mosquitto = StockMosquitto(
        "mosquitto", "mosquitto", "mosquitto", pair.mosquitto.port, "127.0.0.1", pair.state_dir
    )
    pair.up(timeout=60)
    try:
        settings = RunhoursSettings(
            mqtt_url=pair.mqtt_url, influx_url=pair.influx_url, influx_db=test_id
        )
        code, output = _doctor(settings, "--burst", "3000")
    finally:
        pair.down()
    assert code == 1
    assert "kept 1000 of 3000 messages for an offline session" in output, output
    assert "no ingest worker online" in output
