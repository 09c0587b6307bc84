"""The Docker deployment's InfluxDB users, made for real: deploy/influxdb/init-users.sh
against a real InfluxDB 1.6.7 with authentication, the way the influxdb:1.8 image runs it.

The image makes the admin and the database, then sources the script with ``$INFLUX_CMD``
(its ``influx … -execute`` as the admin). Debian ships no ``influx`` shell here, so a
few lines of Python stand in for it and send each statement to ``/query`` as the admin.
The services' credentials come from docker-compose.yml and the env files that
`runhours credentials init --compose` writes.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from runhours.security import SecurityDir
from runhours.security.compose import env_file, init_compose
from runhours.services import InfluxDB, free_port
from tests.support.deploy import read_env_file
from tests.support.influx_privileges import assert_least_privilege
from tests.support.paths import REPO

INFLUX_SHELL = """
import sys, httpx
r = httpx.post(sys.argv[1] + "/query", data={"q": sys.argv[4]}, auth=(sys.argv[2], sys.argv[3]))
sys.exit(0 if r.status_code == 200 and '"error"' not in r.text else f"{r.status_code} {r.text}")
"""


@pytest.fixture
def influxdb(tmp_path: Path) -> Iterator[InfluxDB]:
    server = InfluxDB("influxdb", "influxd", "influxdb", free_port(), "127.0.0.1", tmp_path)
    server.auth = True
    server.start(timeout=60)
    yield server
    server.stop()


def test_init_users_gives_each_role_its_privilege(influxdb: InfluxDB, tmp_path: Path) -> None:
    secrets = SecurityDir(tmp_path / "secrets")
    init_compose(secrets, public_names=[])
    env = read_env_file(env_file(secrets, "influxdb"))
    url = f"http://127.0.0.1:{influxdb.port}"
    admin = env["INFLUXDB_ADMIN_PASSWORD"]
    # What the image does first: the admin (allowed once, unauthenticated), the database.
    httpx.post(f"{url}/query", data={"q": f"CREATE USER admin WITH PASSWORD '{admin}' WITH ALL PRIVILEGES"}).raise_for_status()  # fmt: skip
    httpx.post(f"{url}/query", data={"q": "CREATE DATABASE runhours"}, auth=("admin", admin)).raise_for_status()  # fmt: skip
    shell = tmp_path / "influx.py"
    shell.write_text(INFLUX_SHELL)
    script = REPO / "deploy/influxdb/init-users.sh"
    done = subprocess.run(
        ["/bin/sh", "-euc", f'. "{script}"'],
        env={
            **os.environ,
            **env,
            "INFLUXDB_DB": "runhours",
            "INFLUX_CMD": f"{sys.executable} {shell} {url} admin {admin}",
        },
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr

    def password(service: str) -> str:  # what each container is given
        if service == "grafana":
            return env["GRAFANA_INFLUX_PASSWORD"]
        return read_env_file(env_file(secrets, service))["RUNHOURS_INFLUX_PASSWORD"]

    assert_least_privilege(url, "runhours", password)
    grafana_password = env["GRAFANA_INFLUX_PASSWORD"]
    # Grafana's own env file carries the same password its data source uses.
    assert read_env_file(env_file(secrets, "grafana"))["INFLUXDB_READ_USER_PASSWORD"] == grafana_password  # fmt: skip
