"""The Docker broker on a real Mosquitto (the local binary, no Docker): its entrypoint,
config, ACL and the secrets `runhours credentials init --compose` makes.

deploy/mosquitto/entrypoint.sh and mosquitto.conf run unchanged except for paths, ports
and the user Mosquitto runs as; then real clients log in over TLS as each service and as
machines, and a machine added afterwards gets in once the broker is sent SIGHUP (as
`docker compose kill -s HUP mosquitto` would).
"""

from __future__ import annotations

import getpass
import os
import shutil
import signal
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from common.settings import load_settings
from edge.config import EdgeSettings
from runhours.security import SecurityDir
from runhours.security.compose import env_file, init_compose
from runhours.security.credentials import Machines
from runhours.services import free_port
from tests.support.deploy import read_env_file
from tests.support.paths import REPO
from tests.support.waiting import port_open, wait_until
from wire import MachineRef, alert_topic, telemetry_topic

NOT_AUTHORIZED = 0x87
A = MachineRef("plant1", "line-a", "cnc-01")
B = MachineRef("plant1", "line-a", "pump-01")


@dataclass
class Broker:
    port: int
    mtls_port: int
    secrets: SecurityDir
    process: subprocess.Popen[bytes]
    log: Path

    def password(self, service: str) -> str:
        return read_env_file(env_file(self.secrets, service))["RUNHOURS_MQTT_PASSWORD"]

    def machine(self, ref: MachineRef) -> tuple[str, str]:
        path = self.secrets.edge_dir / ref.site / ref.line / f"{ref.machine}.toml"
        url = load_settings(EdgeSettings, path).mqtt
        assert url.username is not None and url.password is not None
        return url.username, url.password


def _default_sighup() -> None:
    signal.signal(signal.SIGHUP, signal.SIG_DFL)


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Broker]:
    secrets = SecurityDir(tmp_path / "secrets")
    init_compose(secrets, public_names=[], fleet=[A, B])
    port, mtls_port = free_port(), free_port()
    target = tmp_path / "config" / "secrets"
    conf = (REPO / "deploy/mosquitto/mosquitto.conf").read_text()
    conf = (
        conf.replace("listener 8883 0.0.0.0", f"listener {port} 127.0.0.1")
        .replace("listener 8884 0.0.0.0", f"listener {mtls_port} 127.0.0.1")
        .replace("/mosquitto/config/secrets", str(target))
        .replace("/mosquitto/config/acl", str(REPO / "deploy/mosquitto/acl"))
        .replace("/mosquitto/data/", f"{tmp_path}/data/")
        .replace("log_dest stdout", f"log_dest file {tmp_path}/mosquitto.log")
    )
    (tmp_path / "data").mkdir()
    (tmp_path / "mosquitto.conf").write_text(f"user {getpass.getuser()}\n{conf}")
    # The compose mounts: ./secrets/ca.pem and ./secrets/broker under /run/runhours.
    source = tmp_path / "run"
    source.mkdir()
    (source / "ca.pem").symlink_to(secrets.ca.cert_file)
    (source / "broker").symlink_to(secrets.broker_dir)
    env = {
        "PATH": f"{os.environ.get('PATH', '')}:/usr/sbin",
        "SOURCE": str(source),
        "TARGET": str(target),
        "CONFIG": str(tmp_path / "mosquitto.conf"),
        "OWNER": getpass.getuser(),
        "DATA": str(tmp_path / "data"),
    }
    entrypoint_log = tmp_path / "entrypoint.log"
    with entrypoint_log.open("wb") as log:
        process = subprocess.Popen(
            ["/bin/sh", str(REPO / "deploy/mosquitto/entrypoint.sh")],
            env=env,
            stdout=log,
            stderr=log,
            # A shell cannot trap a signal ignored when it started (POSIX): under nohup
            # SIGHUP is, and the reload would never happen. Docker starts it as default.
            preexec_fn=_default_sighup,
        )
    try:
        # Ready once the broker listens and the entrypoint has set its SIGHUP trap.
        assert wait_until(
            lambda: port_open(port) and "started" in entrypoint_log.read_text(), 10
        ), (tmp_path / "mosquitto.log").read_text()
        yield Broker(port, mtls_port, secrets, process, tmp_path / "mosquitto.log")
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(10) == 0  # the entrypoint passes SIGTERM on and exits cleanly


class Client:
    """A paho MQTT 5 client over TLS that records its login and its PUBACKs."""

    def __init__(self, broker: Broker, user: str | None, password: str | None) -> None:
        self.received: list[str] = []
        self.connected = threading.Event()
        self.reason: int | None = None
        self.pubacks: dict[int, int] = {}
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=f"t-{uuid.uuid4().hex[:8]}", protocol=mqtt.MQTTv5
        )
        self.client.tls_set(ca_certs=str(broker.secrets.ca.cert_file))
        if user:
            self.client.username_pw_set(user, password)
        self.client.on_connect = self._on_connect
        self.client.on_message = lambda c, u, m: self.received.append(m.topic)
        self.client.on_publish = lambda c, u, mid, rc, p: self.pubacks.__setitem__(mid, rc.value)
        self.client.connect("localhost", broker.port)
        self.client.loop_start()
        self.connected.wait(5)

    def _on_connect(self, client, userdata, flags, reason, properties) -> None:
        self.reason = reason.value
        self.connected.set()

    @property
    def ok(self) -> bool:
        return self.reason == 0

    def publish(self, topic: str, retain: bool = False) -> int:
        info = self.client.publish(topic, b"{}", qos=1, retain=retain)
        assert wait_until(lambda: info.mid in self.pubacks, 5)
        return self.pubacks[info.mid]

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


def test_logins_acl_and_reload_on_the_compose_broker(broker: Broker) -> None:
    anonymous = Client(broker, None, None)
    wrong = Client(broker, "ingest", "not-the-password")
    assert anonymous.reason == wrong.reason == NOT_AUTHORIZED
    ingest = Client(broker, "ingest", broker.password("ingest"))
    analytics = Client(broker, "analytics", broker.password("analytics"))
    a = Client(broker, *broker.machine(A))
    clients = [anonymous, wrong, ingest, analytics, a]
    try:
        assert ingest.ok and analytics.ok and a.ok
        ingest.client.subscribe("$share/ingest/runhours/v1/+/+/+/telemetry", qos=1)
        a.client.subscribe("runhours/v1/#", qos=1)  # eavesdropping: delivers nothing
        time.sleep(0.3)
        assert a.publish(telemetry_topic(*A)) == 0
        assert a.publish(telemetry_topic(*B)) == NOT_AUTHORIZED  # another machine's topic
        assert analytics.publish(telemetry_topic("plant1", "line-a", "forged")) == NOT_AUTHORIZED
        assert analytics.publish(alert_topic("plant1", "vib", "cnc-01"), retain=True) == 0
        assert wait_until(lambda: ingest.received == [telemetry_topic(*A)], 10)
        time.sleep(0.3)
        assert ingest.received == [telemetry_topic(*A)] and a.received == []

        # A machine added afterwards: refused until the broker reloads (SIGHUP to the
        # entrypoint, which installs the new password file first).
        c = MachineRef("plant1", "line-b", "comp-07")
        Machines(broker.secrets).add(c)
        before = Client(broker, *broker.machine(c))
        before.close()
        assert before.reason == NOT_AUTHORIZED
        broker.process.send_signal(signal.SIGHUP)
        logins: list[Client] = []

        def logged_in() -> bool:
            logins.append(Client(broker, *broker.machine(c)))
            return logins[-1].ok

        assert wait_until(logged_in, 10), (
            "the new machine never got in; entrypoint:\n"
            + (broker.log.parent / "entrypoint.log").read_text()
            + "\nbroker:\n"
            + "\n".join(broker.log.read_text().splitlines()[-30:])
        )
        clients += logins
        assert logins[-1].publish(telemetry_topic(*c)) == 0
        # Revoked the same way: the open connection is dropped at the reload.
        Machines(broker.secrets).revoke(A)
        broker.process.send_signal(signal.SIGHUP)
        assert wait_until(lambda: not a.client.is_connected(), 10)
    finally:
        for client in clients:
            client.close()
    assert shutil.which("mosquitto") or Path("/usr/sbin/mosquitto").exists()
