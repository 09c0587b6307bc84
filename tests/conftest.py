"""Shared fixtures: a real Mosquitto and a real InfluxDB on free ports.

The session-wide pair serves most tests; each test gets its own database and its own
site id, so tests never see each other's data. Tests that stop or kill a service
use ``own_services`` instead, a private pair that nobody else shares.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from common.settings import RunhoursSettings
from runhours.security import SecurityDir
from runhours.services import LocalServices, free_port
from store import InfluxClient
from store.schema import ingest_state_database

# Fixtures shared beyond one folder but needing no session services (private brokers).
pytest_plugins = ("tests.support.brokers",)

# A test that uses one of these (directly or through `settings`, `influx`, …) needs a real
# Mosquitto or InfluxDB: it is marked `services`. The first three are this file's; the
# others start a private broker or database (tests/support/brokers.py, test_edge,
# test_deploy_*, test_security_demo). A test that starts services inside its body marks itself.
# `pytest -m "not services and not slow"` then runs the fast rest (README.md, Development).
SERVICE_FIXTURES = frozenset(
    {"services", "secure_services", "own_services"}
    | {"tls_broker", "acl_broker", "broker", "influxdb", "secure_run"}
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if SERVICE_FIXTURES.intersection(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.services)


def _start(root: Path) -> LocalServices:
    services = LocalServices(root, mqtt_port=free_port(), influx_port=free_port())
    services.up(timeout=60)
    return services


@pytest.fixture(autouse=True)
def _close_influx_clients(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Every InfluxClient a test makes is closed when the test ends: tests make them freely,
    and an open one's pooled sockets would be reported as leaked (warnings are errors)."""
    made: list[InfluxClient] = []
    init = InfluxClient.__init__

    def tracked(self: InfluxClient, *args: Any, **kwargs: Any) -> None:
        init(self, *args, **kwargs)
        made.append(self)

    monkeypatch.setattr(InfluxClient, "__init__", tracked)
    yield
    for client in made:
        client.close()


@pytest.fixture(scope="session")
def services(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalServices]:
    pair = _start(tmp_path_factory.mktemp("services"))
    yield pair
    pair.down()


@pytest.fixture(scope="session")
def secure_services(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalServices]:
    """A secure pair (``runhours services up --secure``): TLS-only broker with logins and the
    per-machine ACL, InfluxDB with authentication; its security directory is
    ``.security``. Tests keep apart by using their ``test_id`` as site id."""
    root = tmp_path_factory.mktemp("secure")
    pair = LocalServices(
        root / "services",
        mqtt_port=free_port(),
        influx_port=free_port(),
        security=SecurityDir(root / "security"),
        mtls_port=free_port(),
    )
    pair.up(timeout=60)
    yield pair
    pair.down()


@pytest.fixture
def own_services(tmp_path: Path) -> Iterator[LocalServices]:
    """A private broker + database, for tests that stop, restart or kill them."""
    pair = _start(tmp_path / "services")
    yield pair
    pair.down()


@pytest.fixture
def test_id(request: pytest.FixtureRequest) -> str:
    """A short id unique to this test, valid as a site id and a database name."""
    name = re.sub(r"[^A-Za-z0-9]", "_", request.node.name)[:32]
    return f"t_{name}_{uuid.uuid4().hex[:6]}"


def _settings(pair: LocalServices, database: str, data_dir: Path) -> RunhoursSettings:
    return RunhoursSettings(
        mqtt_url=pair.mqtt_url,
        influx_url=pair.influx_url,
        influx_db=database,
        data_dir=data_dir,
    )


@pytest.fixture
def settings(services: LocalServices, test_id: str, tmp_path: Path) -> RunhoursSettings:
    """Settings pointing at the shared services, a fresh database and a temp data dir."""
    return _settings(services, test_id, tmp_path / "var")


@pytest.fixture
def own_settings(own_services: LocalServices, test_id: str, tmp_path: Path) -> RunhoursSettings:
    return _settings(own_services, test_id, tmp_path / "var")


@pytest.fixture
def influx(settings: RunhoursSettings) -> Iterator[InfluxClient]:
    with InfluxClient(settings.influx_url, settings.influx_db) as client:
        client.ensure_database()
        yield client
        for database in (settings.influx_db, ingest_state_database(settings.influx_db)):
            client.query(f'DROP DATABASE "{database}"', epoch=None)
