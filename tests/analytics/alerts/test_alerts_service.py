"""The continuous service: restarts without duplicates, and deliveries that never block it.

Live data, 1-second steps: the service evaluates what arrived since its last cycle.
"""

from __future__ import annotations

import json
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from pydantic import SecretStr

from analytics.alerts import AlertStore
from analytics.alerts.store import wait_for
from analytics.service import AnalyticsOptions, AnalyticsService, AnalyticsSettings
from common.settings import RunhoursSettings
from runhours.services import free_port
from store import InfluxClient, Point
from tests.support.paths import REPO
from wire import alert_topic, to_epoch_ms

RULES = """
step = "1s"
renotify = "2s"
[[rule]]
id = "vib"
kind = "threshold"
value = "vibration_mm_s"
above = 4.5
for = "2s"
clear_below = 4.0
severity = "critical"
machines = ["*"]
"""


def write_signal(
    influx: InfluxClient,
    site: str,
    machine: str,
    start: datetime,
    values: list[float],
    every: float = 0.5,
) -> None:
    tags = {"site": site, "line": "line-a", "machine": machine}
    influx.write(
        Point(
            "telemetry",
            tags,
            {"vibration_mm_s": v, "state": "running"},
            to_epoch_ms(start + timedelta(seconds=i * every)),
        )
        for i, v in enumerate(values)
    )


def write_config(settings: RunhoursSettings, tmp_path: Path, **analytics: Any) -> Path:
    rules = tmp_path / "rules.toml"
    rules.write_text(RULES)
    lines = [
        f'influx_url = "{settings.influx_url}"',
        f'influx_db = "{settings.influx_db}"',
        f'mqtt_url = "{settings.mqtt_url}"',
        f'data_dir = "{settings.data_dir}"',
        "[analytics]",
        f'rules = "{rules}"',
    ]
    lines += [f"{k} = {json.dumps(v)}" for k, v in analytics.items()]
    path = tmp_path / "runhours.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


class Retained:
    """An MQTT subscriber recording every message on one topic."""

    def __init__(self, url: str, topic: str) -> None:
        host, port = url.removeprefix("mqtt://").split(":")
        self.messages: list[bytes] = []
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
        self.client.on_message = lambda c, u, m: self.messages.append(bytes(m.payload))
        self.client.on_connect = lambda c, u, f, rc, p: c.subscribe(topic, qos=1)
        self.client.connect(host, int(port))
        self.client.loop_start()

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


def start_service(config: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "runhours",
            "analytics",
            "--config",
            str(config),
            "--log-level",
            "warning",
        ],
        cwd=REPO,
    )


def test_kill_and_restart_mid_incident_keeps_one_alert_and_the_ack(
    influx: InfluxClient, settings: RunhoursSettings, test_id: str, tmp_path: Path
) -> None:
    now = datetime.now(UTC)
    # 9 mm/s from 10 s ago until 14 s from now, then 1 mm/s (resolves).
    write_signal(influx, test_id, "pump-01", now - timedelta(seconds=10), [9.0] * 48 + [1.0] * 80)
    config = write_config(
        settings,
        tmp_path,
        interval=0.3,
        settle="1s",
        start_lookback="30s",
        retry_base=0.1,
        retry_max=1.0,
    )
    subscriber = Retained(settings.mqtt_url, alert_topic(test_id, "vib", "pump-01"))
    store = AlertStore.in_data_dir(settings.data_dir)
    first = start_service(config)
    second = None
    try:
        assert wait_for(lambda: len(store.alerts(active=True)) == 1, 20), "no alert fired"
        (alert,) = store.alerts(active=True)
        assert wait_for(
            lambda: any(h["event"] == "renotified" for h in store.history(alert.id)), 10
        )
        store.ack(alert.id, "jdoe", "bearing ordered")
        first.send_signal(signal.SIGKILL)  # mid-incident: the alert is firing
        first.wait(10)
        assert store.alerts(active=True)[0].id == alert.id

        second = start_service(config)
        assert wait_for(lambda: store.get(alert.id).state == "resolved", 30), "never resolved"
        assert wait_for(lambda: set(store.backlog().values()) == {0}, 10), store.backlog()
        second.send_signal(signal.SIGTERM)
        assert second.wait(15) == 0
    finally:
        for proc in (first, second):
            if proc is not None and proc.poll() is None:
                proc.kill()
                proc.wait()
        subscriber.close()

    alerts = store.alerts()
    assert [a.id for a in alerts] == [alert.id]  # no duplicate after the restart
    final = alerts[0]
    assert (final.state, final.acked_by, final.ack_note) == ("resolved", "jdoe", "bearing ordered")
    events = [h["event"] for h in store.history(alert.id)]
    assert events.count("firing") == 1 and events.count("resolved") == 1
    after_ack = events[events.index("acked") + 1 :]
    assert after_ack == ["resolved"], events  # acknowledged: no more reminders
    # InfluxDB `alerts`: one point per transition (status firing/acked/resolved).
    rows = influx.query_rows(f"SELECT status, alert_id FROM alerts WHERE site = '{test_id}'")
    statuses = [r["status"] for r in rows]
    assert statuses.count("acked") == 1 and statuses.count("resolved") == 1
    assert statuses.count("firing") == events.count("firing") + events.count("renotified")
    assert {r["alert_id"] for r in rows} == {alert.id}
    # MQTT: retained message while active (acked after the ack), cleared on resolve.
    payloads = [json.loads(p) if p else None for p in subscriber.messages]
    assert payloads[0] is not None and payloads[0]["event"] == "firing"
    assert payloads[-1] is None
    assert payloads[-2] is not None and payloads[-2]["acked_by"] == "jdoe"


class Receiver:
    """A webhook receiver on a local port (http.server in a thread), optionally slow."""

    def __init__(self, port: int, delay: float = 0.0) -> None:
        self.received: list[tuple[int, dict[str, Any]]] = []
        received, pause = self.received, delay

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                time.sleep(pause)
                received.append((int(self.headers["X-Runhours-Delivery"]), body))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


WEBHOOK_TOKEN = "T0KEN-b4d6c3e1"  # webhook URLs carry tokens: never logged or stored


@pytest.fixture
def webhook_service(
    influx: InfluxClient, settings: RunhoursSettings, test_id: str, tmp_path: Path
) -> Iterator[tuple[AnalyticsService, int]]:
    """A service with only the webhook channel, and three past incidents to evaluate."""
    start = datetime.now(UTC) - timedelta(minutes=3)
    # Three incidents on pump-01: 5 s high, 10 s low, each firing then resolving.
    write_signal(influx, test_id, "pump-01", start, ([9.0] * 10 + [1.0] * 20) * 3)
    port = free_port()
    rules = tmp_path / "rules.toml"
    rules.write_text(RULES.replace('renotify = "2s"', 'renotify = "0s"'))
    options = AnalyticsOptions(
        rules=rules,
        settle=timedelta(seconds=1),
        start_lookback=timedelta(minutes=4),
        webhook_url=SecretStr(f"http://127.0.0.1:{port}/hook/{WEBHOOK_TOKEN}?key={WEBHOOK_TOKEN}"),
        webhook_timeout=5.0,
        mqtt=False,
        influx=False,
        retry_base=0.1,
        retry_max=0.5,
        rollups=False,
    )
    service = AnalyticsService(AnalyticsSettings(**{**settings.model_dump(), "analytics": options}))
    service.start_delivery()
    yield service, port
    service.close()


def test_webhook_down_for_a_while_gets_every_transition_once_in_order(
    webhook_service: tuple[AnalyticsService, int], caplog: pytest.LogCaptureFixture
) -> None:
    service, port = webhook_service
    began = time.monotonic()
    result = service.cycle()
    assert time.monotonic() - began < 3  # evaluation does not wait for the dead receiver
    assert [t.kind for t in result.transitions] == ["firing", "resolved"] * 3
    time.sleep(2.0)  # the receiver is down: deliveries fail and back off
    assert service.store.backlog() == {"webhook": 6}
    # The failures are logged and kept as the channel's last error, naming only the host.
    with sqlite3.connect(service.store.path) as db:
        [(last_error,)] = db.execute("SELECT last_error FROM cursors WHERE channel = 'webhook'")
    assert last_error.startswith(f"webhook http://127.0.0.1:{port}: ConnectError"), last_error
    failures = [r.getMessage() for r in caplog.records if "outbox webhook" in r.getMessage()]
    assert failures and all(f"http://127.0.0.1:{port}:" in m for m in failures)
    assert WEBHOOK_TOKEN not in caplog.text + last_error
    receiver = Receiver(port)
    try:
        assert wait_for(lambda: len(receiver.received) >= 6, 15), receiver.received
        time.sleep(0.5)  # nothing more arrives: no duplicates
    finally:
        receiver.close()
    seqs = [seq for seq, _ in receiver.received]
    assert seqs == sorted(seqs) and len(set(seqs)) == 6 == len(seqs)
    history = service.store.history()
    assert [body for _, body in receiver.received] == history
    assert [(b["event"], b["alert"]["id"]) for _, b in receiver.received] == [
        (t.kind, t.alert.id) for t in result.transitions
    ]
    assert service.store.backlog() == {"webhook": 0}


def test_slow_webhook_does_not_delay_evaluation(
    webhook_service: tuple[AnalyticsService, int],
) -> None:
    service, port = webhook_service
    receiver = Receiver(port, delay=0.7)  # 6 transitions take > 4 s to deliver
    try:
        began = time.monotonic()
        result = service.cycle()
        elapsed = time.monotonic() - began
        assert len(result.transitions) == 6
        assert elapsed < 1.0, f"evaluation took {elapsed:.2f} s"
        assert service.store.backlog()["webhook"] >= 5  # still being delivered
        assert wait_for(lambda: len(receiver.received) == 6, 15)
    finally:
        receiver.close()
    assert [seq for seq, _ in receiver.received] == sorted(seq for seq, _ in receiver.received)
    assert [b["event"] for _, b in receiver.received] == ["firing", "resolved"] * 3


def test_alerts_of_a_removed_rule_are_resolved_at_start(
    settings: RunhoursSettings, tmp_path: Path
) -> None:
    from analytics.alerts import Alert, Transition

    since = datetime(2026, 3, 2, tzinfo=UTC)
    old = Alert(
        id="0123456789",
        rule="retired",
        rule_kind="threshold",
        machine="pump-01",
        site="plant1",
        line="line-a",
        severity="warning",
        state="firing",
        pending_since=since,
        started_at=since,
    )
    store = AlertStore.in_data_dir(settings.data_dir)
    store.record([Transition("firing", since, old)])
    rules = tmp_path / "rules.toml"
    rules.write_text(RULES)
    options = AnalyticsOptions(rules=rules, mqtt=False, influx=False, rollups=False)
    service = AnalyticsService(AnalyticsSettings(**{**settings.model_dump(), "analytics": options}))
    service.close()
    final = store.get(old.id)
    assert (final.state, final.resolved_by) == ("resolved", "rules")
    assert store.history(old.id)[-1]["note"] == f"rule 'retired' is no longer in {rules}"
