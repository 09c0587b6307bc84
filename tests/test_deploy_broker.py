"""The Docker broker's auth and ACL, on a real Mosquitto (the local binary, no Docker).

deploy/mosquitto/mosquitto.conf and acl run unchanged except for paths and the port;
the password file is built from .env.example's MOSQUITTO_USERS the way entrypoint.sh
builds it (mosquitto_passwd). Then real clients log in as each service's user.
"""

from __future__ import annotations

import getpass
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.properties import Properties

from contract import alert_topic, telemetry_topic
from runhours.services import free_port
from tests.test_deploy import REPO, interpolate, read_env_file


def _users() -> dict[str, str]:
    import yaml

    compose = yaml.safe_load((REPO / "docker-compose.yml").read_text())
    env = read_env_file(REPO / ".env.example")
    line = interpolate(compose["services"]["mosquitto"]["environment"], env, set())
    return dict(pair.split(":", 1) for pair in line["MOSQUITTO_USERS"].split())


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[tuple[int, dict[str, str]]]:
    users = _users()
    passwd = tmp_path / "passwd"
    passwd.touch(mode=0o600)
    for user, password in users.items():
        subprocess.run(["mosquitto_passwd", "-b", str(passwd), user, password], check=True)
    port = free_port()
    conf = (REPO / "deploy/mosquitto/mosquitto.conf").read_text()
    conf = (
        conf.replace("listener 1883 0.0.0.0", f"listener {port} 127.0.0.1")
        .replace("/mosquitto/config/passwd", str(passwd))
        .replace("/mosquitto/config/acl", str(REPO / "deploy/mosquitto/acl"))
        .replace("/mosquitto/data/", f"{tmp_path}/")
        .replace("log_dest stdout", f"log_dest file {tmp_path}/mosquitto.log")
    )
    (tmp_path / "mosquitto.conf").write_text(f"user {getpass.getuser()}\n{conf}")
    process = subprocess.Popen(
        ["mosquitto", "-c", str(tmp_path / "mosquitto.conf")],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                import socket

                socket.create_connection(("127.0.0.1", port), 0.2).close()
                break
            except OSError:
                time.sleep(0.05)
        yield port, users
    finally:
        process.terminate()
        process.wait(10)


class Client:
    """A paho MQTT 5 client that records what it receives and how its login went."""

    def __init__(self, port: int, user: str | None, password: str | None) -> None:
        self.received: list[str] = []
        self.connected = threading.Event()
        self.reason = ""
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
        if user:
            self.client.username_pw_set(user, password)
        self.client.on_connect = self._on_connect
        self.client.on_message = lambda c, u, m: self.received.append(m.topic)
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        self.connected.wait(5)

    def _on_connect(self, client, userdata, flags, reason, properties: Properties | None) -> None:
        self.reason = str(reason)
        self.connected.set()

    @property
    def ok(self) -> bool:
        return self.reason == "Success"

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


def _wait_for(condition: Callable[[], bool], seconds: float = 3.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return bool(condition())


def test_logins_and_acl_on_a_real_broker(broker: tuple[int, dict[str, str]]) -> None:
    port, users = broker
    anonymous = Client(port, None, None)
    wrong = Client(port, "edge", "not-the-password")
    assert not anonymous.ok and not wrong.ok
    ingest = Client(port, "ingest", users["ingest"])
    edge = Client(port, "edge", users["edge"])
    analytics = Client(port, "analytics", users["analytics"])
    clients = [anonymous, wrong, ingest, edge, analytics]
    try:
        assert ingest.ok and edge.ok and analytics.ok
        # The ingest's shared subscription; the edge trying to eavesdrop on telemetry.
        ingest.client.subscribe("$share/ingest/runhours/v1/+/+/+/telemetry", qos=1)
        edge.client.subscribe("runhours/v1/#", qos=1)
        analytics.client.subscribe("runhours/v1/+/+/+/telemetry", qos=1)
        time.sleep(0.3)
        telemetry = telemetry_topic("plant1", "line-a", "cnc-01")
        edge.client.publish(telemetry, b"{}", qos=1).wait_for_publish(3)
        analytics.client.publish(
            telemetry_topic("plant1", "line-a", "forged"), b"{}", qos=1
        ).wait_for_publish(3)
        analytics.client.publish(
            alert_topic("plant1", "vibration-critical", "cnc-01"), b"{}", qos=1, retain=True
        ).wait_for_publish(3)
        assert _wait_for(lambda: ingest.received == [telemetry])
        time.sleep(0.5)
        # The forged message was dropped; nobody but the ingest reads telemetry.
        assert ingest.received == [telemetry]
        assert edge.received == [] and analytics.received == []
    finally:
        for client in clients:
            client.close()
