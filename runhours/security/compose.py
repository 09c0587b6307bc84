"""The security directory of the Docker deployment (docker-compose.yml): ``./secrets``.

Besides what every security directory holds (CA, broker certificate and password file,
service passwords), it has one env file per container under ``compose/`` (mode 0600: only
``docker compose`` reads them, on this host) with that container's passwords, and the
simulated fleet's machine identities. Host names are the compose services' (``mosquitto``,
``influxdb``); the broker's certificate also names the hosts edge devices dial.
"""

from __future__ import annotations

from pathlib import Path

from runhours.security.credentials import Machines
from runhours.security.files import PRIVATE, private_dir, write_private
from runhours.security.layout import Meta, SecurityDir
from wire import MachineRef

ENV_FILES = ("influxdb", "grafana", "mosquitto", "ingest", "analytics")


def compose_meta(public_names: list[str], database: str) -> Meta:
    names = list(dict.fromkeys(["mosquitto", "localhost", "127.0.0.1", *public_names]))
    return Meta(
        broker_host=public_names[0] if public_names else "localhost",
        broker_port=8883,
        mtls_port=8884,
        broker_names=names,
        influx_url="http://influxdb:8086",
        influx_db=database,
        reload_hint="docker compose kill -s HUP mosquitto",
        container_readable=True,
    )


def env_file(security: SecurityDir, service: str) -> Path:
    return security.root / "compose" / f"{service}.env"


def env_values(security: SecurityDir) -> dict[str, dict[str, str]]:
    """Per container: the variables with its passwords."""
    s = security.secrets()
    mqtt, influx = s["mqtt"], s["influx"]
    return {
        # The image makes the admin; deploy/influxdb/init-users.sh the others.
        "influxdb": {
            "INFLUXDB_ADMIN_PASSWORD": influx["admin"],
            "INGEST_INFLUX_PASSWORD": influx["ingest"],
            "ANALYTICS_INFLUX_PASSWORD": influx["analytics"],
            "GRAFANA_INFLUX_PASSWORD": influx["grafana"],
        },
        "grafana": {
            "GF_SECURITY_ADMIN_PASSWORD": s["grafana"]["admin"],
            "INFLUXDB_READ_USER_PASSWORD": influx["grafana"],
        },
        "mosquitto": {"MQTT_HEALTH_PASSWORD": mqtt["ingest"]},
        "ingest": {
            "RUNHOURS_MQTT_PASSWORD": mqtt["ingest"],
            "RUNHOURS_INFLUX_PASSWORD": influx["ingest"],
        },
        "analytics": {
            "RUNHOURS_MQTT_PASSWORD": mqtt["analytics"],
            "RUNHOURS_INFLUX_PASSWORD": influx["analytics"],
        },
    }


def init_compose(
    security: SecurityDir,
    *,
    public_names: list[str],
    database: str = "runhours",
    fleet: list[MachineRef] | None = None,
) -> list[str]:
    """Create (or complete) ``security`` for docker-compose.yml; returns what it made."""
    created = security.init(compose_meta(public_names, database))
    security.ensure_secret("grafana", "admin")
    private_dir(security.root / "compose")
    for service, values in env_values(security).items():
        lines = [f"# {service}: passwords for docker compose (runhours credentials init)."]
        lines += [f"{k}={v}" for k, v in values.items()]
        write_private(env_file(security, service), "\n".join(lines) + "\n", mode=PRIVATE)
    machines = Machines(security)
    for ref in fleet or []:
        if machines.get(ref) is None:
            machines.add(ref)
            created.append(f"identity of machine {'/'.join(ref)}")
    return created
