"""Per-machine identities, TLS and least privilege on a real secure pair
(`runhours services up --secure`: Mosquitto with TLS, password file, per-machine ACL and
CRL; InfluxDB with authentication and one user per role).

Edge agents, the ingest and the raw MQTT clients here are the real ones; what is stored
is counted in InfluxDB.
"""

from __future__ import annotations

import asyncio
import getpass
import os
import socket
import ssl
import stat
import subprocess
import threading
import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.reasoncodes import ReasonCode
from typer.testing import CliRunner

from common.settings import RunhoursSettings, load_settings
from edge import EdgeAgent, SampleBuffer
from edge.config import EdgeSettings
from edge.mqtt import Broker
from ingest import IngestService, IngestSettings
from runhours.cli import app as cli
from runhours.doctor import run_checks
from runhours.security import SecurityDir
from runhours.security.credentials import MachineCredentials, Machines
from runhours.security.influx import ensure_users
from runhours.security.tls import CertificateAuthority
from runhours.services import LocalServices, free_port
from store import InfluxClient
from tests.support.edge import fast_options, make_readings
from tests.support.influx_privileges import assert_least_privilege
from tests.support.waiting import port_open, wait_until
from wire import MachineRef, telemetry_topic

NOT_AUTHORIZED = 0x87


def security_of(pair: LocalServices) -> SecurityDir:
    assert pair.security is not None
    return pair.security


def role(pair: LocalServices, name: str) -> Path:
    return security_of(pair).role_file(name)


def machine(pair: LocalServices, ref: MachineRef, kind: str = "password") -> MachineCredentials:
    machines = Machines(security_of(pair))
    made = machines.add(ref, kind=kind)  # type: ignore[arg-type]
    assert "reloaded" in machines.reload()
    return made


def edge_settings(made: MachineCredentials, tmp_path: Path) -> EdgeSettings:
    return load_settings(EdgeSettings, made.settings_file, data_dir=tmp_path / "var")


@pytest.fixture
def ingest(secure_services: LocalServices, test_id: str) -> Iterator[IngestService]:
    """The ingest with its own account (ingest.toml: MQTT user ingest, InfluxDB WRITE)."""
    settings = load_settings(
        IngestSettings,
        role(secure_services, "ingest"),
        ingest={"client_id": f"ingest-{test_id}", "site": test_id, "stats_interval": 0},
    )
    with IngestService(settings) as service:
        yield service


def reader(pair: LocalServices) -> InfluxClient:
    """InfluxDB as Grafana reads it (READ only)."""
    settings = load_settings(EdgeSettings, role(pair, "grafana"))
    return InfluxClient.from_settings(settings)


def run_agent(ref: MachineRef, broker: Broker, buffer_path: Path, n: int, wait: float) -> EdgeAgent:
    """An edge agent for ``ref`` through ``broker``: submit ``n`` readings, let it try for
    up to ``wait`` seconds (until drained), stop it."""

    async def go() -> EdgeAgent:
        with SampleBuffer(buffer_path) as buffer:
            agent = EdgeAgent(ref, buffer, broker, fast_options())
            task = asyncio.create_task(agent.run())
            agent.submit(make_readings(0, n))
            await agent.drain(wait)
            agent.stop()
            await task
            return agent

    return asyncio.run(go())


class RawClient:
    """A paho MQTT 5 client that records its CONNACK and each PUBACK's reason code."""

    def __init__(
        self,
        port: int,
        *,
        user: str | None = None,
        password: str | None = None,
        ca: Path | None = None,
        cert: tuple[Path, Path] | None = None,
        tls: bool = True,
    ) -> None:
        self.connack: ReasonCode | None = None
        self.pubacks: dict[int, int] = {}
        self.connected = threading.Event()
        self.disconnected = threading.Event()
        self.error = ""
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=f"raw-{uuid.uuid4().hex[:8]}",
            protocol=mqtt.MQTTv5,
        )
        if user is not None:
            self.client.username_pw_set(user, password)
        if tls:
            self.client.tls_set(
                ca_certs=str(ca) if ca else None,
                certfile=str(cert[0]) if cert else None,
                keyfile=str(cert[1]) if cert else None,
            )
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = lambda *_: self.disconnected.set()
        self.client.on_publish = self._on_publish
        try:
            self.client.connect("localhost", port)
        except OSError as exc:  # TLS refused during the handshake
            self.error = str(exc)
            self.connected.set()
            return
        self.client.loop_start()

    def _on_connect(self, client, userdata, flags, reason, properties) -> None:
        self.connack = reason
        self.connected.set()

    def _on_publish(self, client, userdata, mid, reason, properties) -> None:
        self.pubacks[mid] = reason.value

    def wait(self) -> RawClient:
        assert self.connected.wait(10) or self.disconnected.wait(0), "no CONNACK"
        return self

    @property
    def ok(self) -> bool:
        return self.connack is not None and not self.connack.is_failure

    def publish(self, topic: str) -> int:
        """Publish QoS 1; the PUBACK's reason code."""
        info = self.client.publish(topic, b"{}", qos=1)
        assert wait_until(lambda: info.mid in self.pubacks, 10), "no PUBACK"
        return self.pubacks[info.mid]

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


def logs_in(port: int, user: str | None, password: str | None, ca: Path) -> bool:
    client = RawClient(port, user=user, password=password, ca=ca).wait()
    client.close()
    return client.ok


# MQTT 3.1.1 CONNECT: client id "probe", clean session, no user name.
CONNECT = b"\x10\x11\x00\x04MQTT\x04\x02\x00\x3c\x00\x05probe"


def probe(port: int, ca: Path | None, cert: tuple[Path, Path] | None = None) -> str:
    """Open a connection (TLS if ``ca``), send CONNECT: ``"CONNACK 0x00"`` and so on, or
    why the TLS handshake or the connection failed."""
    with socket.create_connection(("127.0.0.1", port), 5) as raw:
        conn: socket.socket = raw
        try:
            if ca is not None:
                context = ssl.create_default_context(cafile=str(ca))
                # TLS 1.2 checks the client's certificate inside the handshake, so the
                # broker's verdict arrives as the handshake's alert (1.3 sends it later,
                # racing the connection's close).
                context.maximum_version = ssl.TLSVersion.TLSv1_2
                if cert is not None:
                    context.load_cert_chain(str(cert[0]), str(cert[1]))
                conn = context.wrap_socket(raw, server_hostname="localhost")
            conn.sendall(CONNECT)
            answer = conn.recv(4)
        except (ssl.SSLError, OSError) as exc:
            return f"refused: {exc}"
        finally:
            if conn is not raw:
                conn.close()
    if len(answer) == 4 and answer[0] == 0x20:
        return f"CONNACK 0x{answer[3]:02x}"
    return f"closed: {answer!r}"


def test_a_machine_publishes_only_its_own_telemetry(
    secure_services: LocalServices, ingest: IngestService, test_id: str, tmp_path: Path
) -> None:
    a = MachineRef(test_id, "line-a", "cnc-01")
    b = MachineRef(test_id, "line-a", "cnc-02")
    made_a, made_b = machine(secure_services, a), machine(secure_services, b)
    settings_a = edge_settings(made_a, tmp_path)
    assert settings_a.broker.username == f"{test_id}/line-a/cnc-01" and settings_a.broker.tls

    own = run_agent(a, settings_a.broker, tmp_path / "a.sqlite3", 20, wait=10)
    assert own.stats.published == 20

    # A's identity trying B's topic: the agent's publishes are refused, its samples kept.
    forger = run_agent(b, settings_a.broker, tmp_path / "forged.sqlite3", 20, wait=2)
    assert forger.stats.published == 0 and forger.stats.buffered == 20
    assert "not authorized" in (forger.last_error or "").lower(), forger.last_error
    # The reason code itself, from a raw client with A's password.
    raw = RawClient(
        secure_services.mosquitto.port,
        user=settings_a.broker.username,
        password=settings_a.broker.password,
        ca=security_of(secure_services).ca.cert_file,
    ).wait()
    try:
        assert raw.ok
        assert raw.publish(telemetry_topic(*b)) == NOT_AUTHORIZED
        assert raw.publish(f"runhours/v1/{test_id}/alerts/rule/cnc-02") == NOT_AUTHORIZED
        assert raw.publish("runhours/v1/deadletter/x") == NOT_AUTHORIZED
    finally:
        raw.close()
    # B itself may publish: the refusal was about the identity, not the topic.
    own_b = run_agent(b, edge_settings(made_b, tmp_path).broker, tmp_path / "b.sqlite3", 5, 10)
    assert own_b.stats.published == 5

    assert ingest.wait_idle(15)
    with reader(secure_services) as influx:
        stored = influx.count("telemetry", "state", f"site = '{test_id}'")
    assert stored == {"cnc-01": 20, "cnc-02": 5}  # none of the 20 forged samples


def test_no_login_no_connection(
    secure_services: LocalServices, test_id: str, tmp_path: Path
) -> None:
    port, ca = secure_services.mosquitto.port, security_of(secure_services).ca.cert_file
    anonymous = RawClient(port, ca=ca).wait()
    wrong = RawClient(port, user="ingest", password="not-the-password", ca=ca).wait()
    plain = probe(port, None)  # no TLS at all: the broker hangs up (or resets)
    assert plain.startswith(("closed: b''", "refused: [Errno 104]")), plain
    try:
        assert anonymous.connack is not None and anonymous.connack.value == NOT_AUTHORIZED
        # Mosquitto answers a wrong password like no login at all.
        assert wrong.connack is not None and wrong.connack.value == NOT_AUTHORIZED
    finally:
        for client in (anonymous, wrong):
            client.close()
    # The edge agent without a password: refused, and says so.
    ref = MachineRef(test_id, "line-a", "cnc-09")
    broker = Broker("localhost", port, username=f"{test_id}/line-a/cnc-09", tls=True, ca_file=ca)
    agent = run_agent(ref, broker, tmp_path / "buffer.sqlite3", 3, wait=1.5)
    assert agent.stats.connects == 0 and agent.stats.buffered == 3
    assert "not authorized" in (agent.last_error or "").lower(), agent.last_error


@pytest.fixture
def rogue_broker(tmp_path: Path) -> Iterator[tuple[int, Path]]:
    """Start Mosquitto with a certificate given as ``cert.pem``/``cert.key`` in tmp_path
    (anonymous logins allowed: only the certificate is on trial)."""
    ports: list[int] = []
    procs: list[subprocess.Popen[bytes]] = []

    def start(cert: Path, key: Path) -> int:
        port = free_port()
        conf = tmp_path / f"rogue-{port}.conf"
        conf.write_text(
            f"user {getpass.getuser()}\nlistener {port} 127.0.0.1\ncertfile {cert}\n"
            f"keyfile {key}\nallow_anonymous true\nlog_dest none\n"
        )
        procs.append(subprocess.Popen(["mosquitto", "-c", str(conf)]))
        assert wait_until(lambda: port_open(port), 10)
        ports.append(port)
        return port

    yield start  # type: ignore[misc]
    for proc in procs:
        proc.terminate()
        proc.wait(10)


def test_the_edge_refuses_a_broker_it_cannot_verify(
    secure_services: LocalServices, rogue_broker, test_id: str, tmp_path: Path
) -> None:
    security = security_of(secure_services)
    made = machine(secure_services, MachineRef(test_id, "line-a", "cnc-03"))
    settings = edge_settings(made, tmp_path)
    # A broker with a certificate from a CA the edge does not know.
    rogue = CertificateAuthority.create(tmp_path / "rogue-ca.pem", tmp_path / "rogue-ca.key")
    rogue.issue("broker", tmp_path / "r.pem", tmp_path / "r.key", server_names=["localhost"])
    unknown_ca = rogue_broker(tmp_path / "r.pem", tmp_path / "r.key")
    # Our own CA, but a certificate for another name than the one the edge dials.
    security.ca.issue("elsewhere", tmp_path / "o.pem", tmp_path / "o.key", server_names=["other"])
    wrong_name = rogue_broker(tmp_path / "o.pem", tmp_path / "o.key")
    ref = MachineRef(test_id, "line-a", "cnc-03")
    for port, reason in ((unknown_ca, "unable to get local issuer"), (wrong_name, "hostname")):
        broker = Broker.from_settings(settings)
        broker = Broker("localhost", port, broker.username, broker.password, True, broker.ca_file)
        agent = run_agent(ref, broker, tmp_path / f"{port}.sqlite3", 3, wait=1.5)
        assert agent.stats.connects == 0 and agent.stats.published == 0
        error = (agent.last_error or "").lower()
        assert "certificate verify failed" in error and reason in error, error


def test_revoke_and_rotate_a_password(
    secure_services: LocalServices, test_id: str, tmp_path: Path
) -> None:
    ref = MachineRef(test_id, "line-a", "pump-01")
    machines = Machines(security_of(secure_services))
    old = edge_settings(machine(secure_services, ref), tmp_path).broker
    ca = security_of(secure_services).ca.cert_file
    port = secure_services.mosquitto.port
    connected = RawClient(port, user=old.username, password=old.password, ca=ca).wait()
    try:
        assert connected.ok
        machines.revoke(ref)
        machines.reload()
        # The broker drops the open connection at the reload, and refuses the next login.
        assert connected.disconnected.wait(10)
    finally:
        connected.close()
    again = RawClient(port, user=old.username, password=old.password, ca=ca).wait()
    again.close()
    assert again.connack is not None and again.connack.is_failure
    assert (
        not (security_of(secure_services).edge_dir / test_id)
        .joinpath("line-a/pump-01.toml")
        .exists()
    )

    fresh = machines.add(ref)
    machines.reload()
    new = edge_settings(fresh, tmp_path).broker
    assert wait_until(
        lambda: RawClient(port, user=new.username, password=new.password, ca=ca).wait().ok, 10
    )
    online = RawClient(port, user=new.username, password=new.password, ca=ca).wait()
    rotated = edge_settings(machines.add(ref, replace=True), tmp_path).broker
    machines.reload()
    assert new.password != rotated.password
    assert online.disconnected.wait(10)  # logged in with the old password: dropped
    online.close()
    stale = RawClient(port, user=new.username, password=new.password, ca=ca).wait()
    current = RawClient(port, user=rotated.username, password=rotated.password, ca=ca).wait()
    stale.close()
    current.close()
    assert stale.connack is not None and stale.connack.is_failure and current.ok


def test_client_certificates_identify_machines_and_can_be_revoked(
    secure_services: LocalServices, ingest: IngestService, test_id: str, tmp_path: Path
) -> None:
    ref = MachineRef(test_id, "line-b", "comp-01")
    machines = Machines(security_of(secure_services))
    made = machine(secure_services, ref, kind="certificate")
    settings = edge_settings(made, tmp_path)
    assert settings.mqtt.port == secure_services.mosquitto.mtls_port
    assert settings.mqtt.username is None and settings.mqtt_password is None
    agent = run_agent(ref, settings.broker, tmp_path / "c.sqlite3", 10, wait=10)
    assert agent.stats.published == 10

    assert settings.mqtt_cert_file is not None and settings.mqtt_key_file is not None
    assert settings.mqtt_ca_file is not None
    cert = (settings.mqtt_cert_file, settings.mqtt_key_file)
    raw = RawClient(settings.mqtt.port, ca=settings.mqtt_ca_file, cert=cert).wait()
    try:
        assert raw.ok
        assert raw.publish(telemetry_topic(test_id, "line-b", "comp-02")) == NOT_AUTHORIZED
    finally:
        raw.close()
    port, ca = settings.mqtt.port, settings.mqtt_ca_file
    assert probe(port, ca, cert) == "CONNACK 0x00"
    bare = probe(port, ca)  # the mTLS listener: no certificate, no entry
    assert bare.startswith("refused:") and "handshake failure" in bare, bare

    kept = tmp_path / "revoked.pem", tmp_path / "revoked.key"
    for src, dst in zip(cert, kept, strict=True):
        dst.write_bytes(src.read_bytes())
    machines.revoke(ref)
    machines.reload()
    assert "certificate revoked" in probe(port, ca, kept)  # the CRL, re-read on SIGHUP
    assert ingest.wait_idle(15)
    with reader(secure_services) as influx:
        assert influx.count("telemetry", "state", f"site = '{test_id}'") == {"comp-01": 10}


def test_influxdb_users_have_least_privilege(secure_services: LocalServices) -> None:
    security = security_of(secure_services)
    secrets = security.secrets()["influx"]
    url = secure_services.influx_url
    assert_least_privilege(url, "runhours", lambda role: secrets[role])
    # A deployment made before the ingest's state database (its ingest had ALL, nobody had
    # rights on the state): making the users again takes the extra rights away.
    with InfluxClient(url, "runhours", username="admin", password=secrets["admin"]) as admin:
        admin.query("GRANT ALL ON runhours TO ingest; GRANT ALL ON runhours_ingest TO analytics")
    ensure_users(security, url, "runhours")
    assert_least_privilege(url, "runhours", lambda role: secrets[role])


def test_files_holding_secrets_are_private_and_the_cli_adds_lists_revokes(
    secure_services: LocalServices, test_id: str
) -> None:
    security = security_of(secure_services)
    for path in [security.secrets_file, security.ca.key_file, security.server_key,
                 security.passwd.path, *(security.role_file(r) for r in ("ingest", "analytics", "grafana", "admin"))]:  # fmt: skip
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    assert stat.S_IMODE(security.root.stat().st_mode) == 0o700

    runner = CliRunner()
    where = ["--dir", str(security.root)]
    added = runner.invoke(
        cli, ["credentials", "add", "--machine", f"{test_id}/line-c/cnc-07", *where]
    )
    assert added.exit_code == 0, added.output
    path = security.edge_dir / test_id / "line-c" / "cnc-07.toml"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    password = load_settings(EdgeSettings, path).mqtt.password
    assert password and password in added.stdout  # the snippet is the command's output
    listed = runner.invoke(cli, ["credentials", "list", *where], env={"COLUMNS": "300"})
    assert f"{test_id}/line-c/cnc-07" in listed.output and password not in listed.output
    twice = runner.invoke(
        cli, ["credentials", "add", "--machine", f"{test_id}/line-c/cnc-07", *where]
    )
    assert twice.exit_code == 2 and "already has credentials" in " ".join(twice.output.split())
    reserved = runner.invoke(
        cli, ["credentials", "add", "--machine", f"{test_id}/alerts/x", *where]
    )
    assert reserved.exit_code == 2 and "is reserved" in " ".join(reserved.output.split())
    revoked = runner.invoke(
        cli, ["credentials", "revoke", "--machine", f"{test_id}/line-c/cnc-07", *where]
    )
    assert revoked.exit_code == 0 and "reloaded" in revoked.output
    assert f"{test_id}/line-c/cnc-07" not in security.passwd.users() and not path.exists()
    assert os.environ.get("RUNHOURS_MQTT_PASSWORD") is None


def test_the_doctor_says_what_a_write_only_account_cannot_check(
    secure_services: LocalServices,
) -> None:
    since = timedelta(hours=1)
    ingest = load_settings(RunhoursSettings, role(secure_services, "ingest"))
    checks = {check.name: check for check in run_checks(ingest, burst=0, since=since)}
    assert checks["InfluxDB"].status == "ok", checks
    assert "may write it, not read it" in checks["InfluxDB"].detail
    assert checks["delivery"].status == "warn" and "not checked" in checks["delivery"].detail
    analytics = load_settings(RunhoursSettings, role(secure_services, "analytics"))
    delivery = run_checks(analytics, burst=0, since=since)[-1]
    assert delivery.name == "delivery" and "not checked" not in delivery.detail, delivery
