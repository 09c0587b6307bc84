"""No-data end to end: a real edge agent (the simulator's) is killed, then comes back.

Edge agent → Mosquitto → ingest → InfluxDB → analytics service, all real processes
except the service, which runs in the test process with 1-second steps.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from analytics.alerts import AlertStore
from analytics.alerts.store import wait_for
from analytics.service import AnalyticsOptions, AnalyticsService, AnalyticsSettings
from common.settings import RunhoursSettings
from store import InfluxClient
from tests.support.paths import REPO
from tests.support.processes import terminate

RULES = """
step = "1s"
renotify = "0s"
[[rule]]
id = "no-data"
kind = "no_data"
silent_for = "5s"
offline_for = "1s"
severity = "critical"
machines = ["*"]
"""


def _env(settings: RunhoursSettings, data_dir: Path) -> dict[str, str]:
    return {
        **os.environ,
        "RUNHOURS_MQTT_URL": settings.mqtt_url,
        "RUNHOURS_INFLUX_URL": settings.influx_url,
        "RUNHOURS_INFLUX_DB": settings.influx_db,
        "RUNHOURS_DATA_DIR": str(data_dir),
    }


def _runhours(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "runhours", *args],
            env=env,
            cwd=REPO,
            stdout=out,
            stderr=subprocess.STDOUT,
        )


def _agent(env: dict[str, str], site: str, log: Path) -> subprocess.Popen[bytes]:
    start = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    args = ["simulate", "--machines", "1", "--speed", "1", "--days", "1", "--sample-interval", "1"]
    return _runhours([*args, "--site", site, "--start", start, "--no-progress"], env, log)


@pytest.fixture
def ingest(
    settings: RunhoursSettings, influx: InfluxClient, test_id: str, tmp_path: Path
) -> Iterator[dict[str, str]]:
    env = _env(settings, tmp_path / "pipeline")
    # This test's site only: the shared broker holds other tests' retained statuses, which
    # an ingest of every site would store here (and the no-data rule would see).
    ingest_env = {
        **env,
        "RUNHOURS_INGEST__SITE": test_id,
        "RUNHOURS_INGEST__CLIENT_ID": f"ingest-{test_id}",
    }
    proc = _runhours(["ingest", "--log-level", "warning"], ingest_env, tmp_path / "ingest.log")
    yield env
    terminate(proc, 15)


def test_no_data_fires_when_the_edge_agent_is_killed_and_resolves_when_it_returns(
    ingest: dict[str, str],
    settings: RunhoursSettings,
    influx: InfluxClient,
    test_id: str,
    tmp_path: Path,
) -> None:
    rules = tmp_path / "rules.toml"
    rules.write_text(RULES)
    options = AnalyticsOptions(
        rules=rules,
        interval=0.5,
        settle=timedelta(seconds=1),
        start_lookback=timedelta(seconds=5),
        mqtt=False,
        influx=False,
        rollups=False,
    )
    service = AnalyticsService(AnalyticsSettings(**{**settings.model_dump(), "analytics": options}))
    store = AlertStore.in_data_dir(settings.data_dir)
    stop = threading.Event()
    loop = threading.Thread(target=service.run, args=(stop,), daemon=True)
    agents: list[subprocess.Popen[bytes]] = []
    try:
        agents.append(_agent(ingest, test_id, tmp_path / "agent.log"))
        assert wait_for(lambda: sum(influx.count("telemetry", "state").values()) >= 3, 30), (
            "no telemetry"
        )
        loop.start()
        assert wait_for(lambda: (service.store.meta("until") or "0") > "0", 10)
        assert store.alerts() == []  # reporting: no alert
        agents[0].send_signal(signal.SIGKILL)  # the agent dies: the broker sends its will
        agents[0].wait(10)
        assert wait_for(lambda: len(store.alerts(active=True)) == 1, 30), "no-data did not fire"
        (alert,) = store.alerts(active=True)
        assert (alert.rule, alert.machine, alert.site) == ("no-data", "cnc-01", test_id)

        stored = sum(influx.count("telemetry", "state").values())
        agents.append(_agent(ingest, test_id, tmp_path / "agent.log"))  # it comes back

        def logs() -> str:
            return (
                "\nagent log:\n"
                + (tmp_path / "agent.log").read_text()[-3000:]
                + "\ningest log:\n"
                + (tmp_path / "ingest.log").read_text()[-3000:]
            )

        # Two stages, so a failure says which: its telemetry is stored again (a new
        # process starts, connects, sees the ingest online, publishes), then the alert
        # resolves on the service's next steps.
        assert wait_for(lambda: sum(influx.count("telemetry", "state").values()) > stored, 60), (
            "the agent's telemetry was not stored again" + logs()
        )
        assert wait_for(lambda: store.get(alert.id).state == "resolved", 30), (
            f"did not resolve: {store.get(alert.id)}; analytics until "
            f"{service.store.meta('until')}" + logs()
        )
        assert [a.id for a in store.alerts()] == [alert.id]  # one incident, one alert
        print(
            f"\nno-data: {alert.summary}; fired {alert.started_at:%H:%M:%S}, resolved {store.get(alert.id).resolved_at:%H:%M:%S}"
        )
    finally:
        stop.set()
        if loop.is_alive():
            loop.join(10)
        service.close()
        for agent in agents:
            terminate(agent, 10)
