"""The Docker deployment, checked by reading it: no Docker engine runs here.

`docker` on this machine is a client without an engine and without the compose plugin,
so nothing is built or started. Instead the files are parsed and cross-checked:
docker-compose.yml (with .env.example's values interpolated the way compose does), the
Dockerfile, Mosquitto's config and ACL, and Grafana's provisioning. Every file a service
mounts exists; every RUNHOURS_* variable is a field of the settings model the service's
command reads; every command line parses with the real CLI; ports, users and passwords
agree between the services that must share them.
"""

from __future__ import annotations

import re
import tomllib
import typing
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import typer
import yaml
from pydantic import BaseModel

from analytics.service import AnalyticsSettings
from contract import alert_topic, deadletter_topic, status_topic, telemetry_topic
from contract.settings import RunhoursSettings
from dashboards import DATASOURCE_UID
from edge.config import EdgeSettings
from ingest.config import IngestSettings
from runhours.cli import app

REPO = Path(__file__).resolve().parent.parent
# Which settings model each `runhours <command>` of the compose file reads.
SETTINGS: dict[str, type[RunhoursSettings]] = {
    "ingest": IngestSettings,
    "analytics": AnalyticsSettings,
    "simulate": EdgeSettings,
}
RUNHOURS_SERVICES = {"ingest", "analytics", "fleet"}

_VAR = re.compile(r"\$\$|\$\{(\w+)(?::?([-?])([^}]*))?\}|\$(\w+)")


def read_env_file(path: Path) -> dict[str, str]:
    values = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            name, _, value = line.partition("=")
            values[name.strip()] = value.strip()
    return values


def interpolate(value: Any, env: dict[str, str], used: set[str]) -> Any:
    """Compose's variable substitution: ${VAR}, ${VAR:-default}, ${VAR:?error}, $$."""
    if isinstance(value, dict):
        return {k: interpolate(v, env, used) for k, v in value.items()}
    if isinstance(value, list):
        return [interpolate(v, env, used) for v in value]
    if not isinstance(value, str):
        return value

    def substitute(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        name = match.group(1) or match.group(4)
        used.add(name)
        if name in env and env[name] != "":
            return env[name]
        if match.group(2) == "-":
            return match.group(3)
        raise AssertionError(f"${{{name}}} is not set in .env.example and has no default")

    return _VAR.sub(substitute, value)


@pytest.fixture(scope="module")
def env() -> dict[str, str]:
    return read_env_file(REPO / ".env.example")


@pytest.fixture(scope="module")
def compose(env: dict[str, str]) -> dict[str, Any]:
    raw = yaml.safe_load((REPO / "docker-compose.yml").read_text())
    used: set[str] = set()
    resolved = interpolate(raw, env, used)
    unused = set(env) - used
    assert unused == set(), f".env.example defines variables compose never uses: {unused}"
    return typing.cast(dict[str, Any], resolved)


def _environment(service: dict[str, Any]) -> dict[str, str]:
    environment = service.get("environment", {})
    if isinstance(environment, list):
        environment = dict(item.split("=", 1) for item in environment)
    return {k: str(v) for k, v in environment.items()}


def _mounts(service: dict[str, Any]) -> dict[str, str]:
    """Container path → host source (bind mounts as repo paths, named volumes as names)."""
    mounts = {}
    for volume in service.get("volumes", []):
        source, target, *_ = volume.split(":")
        mounts[target] = source
    return mounts


def test_services_images_and_health_checks(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert set(services) == {"mosquitto", "influxdb", "grafana"} | RUNHOURS_SERVICES
    for name, service in services.items():
        assert "healthcheck" in service and service["healthcheck"]["test"], name
        if name in RUNHOURS_SERVICES:
            assert service["build"] == "." and service["image"] == "runhours:0.1.0", name
        else:  # pinned to an exact release, never `latest`
            assert re.fullmatch(r"[\w./-]+:\d+\.\d+\.\d+", service["image"]), service["image"]
        for dependency, condition in service.get("depends_on", {}).items():
            assert condition == {"condition": "service_healthy"}, name
            assert "healthcheck" in services[dependency], dependency
    assert services["influxdb"]["image"].startswith("influxdb:1.8.")  # v1 API natively


def test_the_fleet_waits_for_the_ingest(compose: dict[str, Any]) -> None:
    """The broker queues messages only for a session that exists: on the first start,
    telemetry published before the ingest first subscribed would be acknowledged to the
    edge agents (deleted from their buffers) and dropped, so the fleet starts after it."""
    services = compose["services"]
    assert services["fleet"]["depends_on"]["ingest"] == {"condition": "service_healthy"}
    assert services["fleet"]["depends_on"]["mosquitto"] == {"condition": "service_healthy"}
    # A fixed client id: the persistent session (and its queue) survives ingest restarts.
    assert _environment(services["ingest"])["RUNHOURS_INGEST__CLIENT_ID"]
    # Healthy means subscribed (the gauge test_ingest checks the ingest exports), not
    # merely that its metrics endpoint answers.
    assert "runhours_ingest_subscribed 1.0" in " ".join(services["ingest"]["healthcheck"]["test"])


def test_mounted_files_exist_and_volumes_are_named(compose: dict[str, Any]) -> None:
    declared = set(compose["volumes"])
    used = set()
    for name, service in compose["services"].items():
        for target, source in _mounts(service).items():
            if source.startswith("."):
                assert (REPO / source).exists(), f"{name} mounts missing {source} at {target}"
            else:
                assert source in declared, f"{name}: volume {source} is not declared"
                used.add(source)
    assert used == declared
    for name in RUNHOURS_SERVICES:
        assert _mounts(compose["services"][name])["/var/lib/runhours"].endswith("-data")


def _field_exists(model: type[BaseModel], path: list[str]) -> bool:
    """Is ``a__b__c`` a (nested) field of ``model``? Unions: any member will do."""
    name, rest = path[0], path[1:]
    if name not in model.model_fields:
        return False
    if not rest:
        return True
    annotation = model.model_fields[name].annotation
    candidates = [annotation, *typing.get_args(annotation)]
    for arg in list(candidates):
        candidates += typing.get_args(arg)  # Annotated[Union[Annotated[...], ...], ...]
    return any(
        isinstance(c, type) and issubclass(c, BaseModel) and _field_exists(c, rest)
        for c in candidates
    )


def _command(service: dict[str, Any]) -> list[str]:
    return [str(part) for part in service["command"]]


def test_environment_variables_are_settings_fields(
    compose: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in sorted(RUNHOURS_SERVICES):
        service = compose["services"][name]
        settings_cls = SETTINGS[_command(service)[0]]
        variables = _environment(service)
        assert {"RUNHOURS_MQTT_URL", "RUNHOURS_INFLUX_URL", "RUNHOURS_INFLUX_DB"} <= set(variables)
        for variable in variables:
            assert variable.startswith("RUNHOURS_"), f"{name}: {variable} is read by nobody"
            path = variable.removeprefix("RUNHOURS_").lower().split("__")
            assert _field_exists(settings_cls, path), (
                f"{name}: {variable} is not a field of {settings_cls.__name__}"
            )
        # And the values validate: the service would start with these settings.
        for variable in [v for v in list(__import__("os").environ) if v.startswith("RUNHOURS_")]:
            monkeypatch.delenv(variable)
        for variable, value in variables.items():
            monkeypatch.setenv(variable, value)
        settings = settings_cls()
        assert settings.influx_url == "http://influxdb:8086"
        assert str(settings.data_dir) == "/var/lib/runhours"


def test_commands_parse_with_the_real_cli(compose: dict[str, Any]) -> None:
    root: Any = typer.main.get_command(app)  # a TyperGroup

    def parse(args: list[str]) -> dict[str, Any]:
        ctx = root.make_context("runhours", list(args))
        name, sub, rest = root.resolve_command(ctx, list(args))
        assert sub is not None and name == args[0]
        return dict(sub.make_context(name, rest).params)  # raises on a bad option or value

    for name in sorted(RUNHOURS_SERVICES):
        parse(_command(compose["services"][name]))
    with pytest.raises(Exception, match="No such option"):  # the check has teeth
        parse(["analytics", "--http-prot", "8080"])
    analytics = _command(compose["services"]["analytics"])
    port = analytics[analytics.index("--http-port") + 1]
    assert compose["services"]["analytics"]["ports"] == [f"8080:{port}"]
    assert (
        f"127.0.0.1:{port}/api/alerts"
        in compose["services"]["analytics"]["healthcheck"]["test"][-1]
    )
    fleet = _command(compose["services"]["fleet"])
    assert fleet[fleet.index("--speed") + 1] == "60"


def _mosquitto_conf() -> dict[str, list[str]]:
    conf: dict[str, list[str]] = {}
    for line in (REPO / "deploy/mosquitto/mosquitto.conf").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            key, _, value = line.partition(" ")
            conf.setdefault(key, []).append(value.strip())
    return conf


def _acl() -> dict[str, list[tuple[str, str]]]:
    rules: dict[str, list[tuple[str, str]]] = {}
    user = ""
    for line in (REPO / "deploy/mosquitto/acl").read_text().splitlines():
        words = line.split()
        if not words or words[0].startswith("#"):
            continue
        if words[0] == "user":
            user = words[1]
            rules[user] = []
        else:
            assert words[0] == "topic" and words[1] in ("read", "write", "readwrite"), line
            rules[user].append((words[1], words[2]))
    return rules


def _matches(topic_filter: str, topic: str) -> bool:
    pattern, parts = topic_filter.split("/"), topic.split("/")
    for i, level in enumerate(pattern):
        if level == "#":
            return True
        if i >= len(parts) or (level != "+" and level != parts[i]):
            return False
    return len(pattern) == len(parts)


def _allowed(rules: list[tuple[str, str]], access: str, topic: str) -> bool:
    return any(_matches(f, topic) and (a == access or a == "readwrite") for a, f in rules)


def test_broker_auth_acl_and_credentials_agree(compose: dict[str, Any]) -> None:
    conf = _mosquitto_conf()
    assert conf["allow_anonymous"] == ["false"]
    assert int(conf["max_queued_messages"][0]) > 1000  # the default drops after 1000
    [listener] = conf["listener"]
    port = int(listener.split()[0])
    mosquitto = compose["services"]["mosquitto"]
    mounts = _mounts(mosquitto)
    assert mounts["/mosquitto/config/mosquitto.conf"] == "./deploy/mosquitto/mosquitto.conf"
    assert mounts[conf["acl_file"][0]] == "./deploy/mosquitto/acl"
    entrypoint = (REPO / mounts[mosquitto["entrypoint"][-1]]).read_text()
    assert f"passwd={conf['password_file'][0]}" in entrypoint
    assert "exec mosquitto -c /mosquitto/config/mosquitto.conf" in entrypoint
    users = dict(pair.split(":", 1) for pair in _environment(mosquitto)["MOSQUITTO_USERS"].split())
    acl = _acl()
    assert set(users) == set(acl) == {"ingest", "edge", "analytics"}
    assert mosquitto["ports"] == [f"1883:{port}"]

    # Each service connects to the broker's port with a user:password the broker knows.
    clients = {}
    for name in sorted(RUNHOURS_SERVICES):
        url = urlsplit(_environment(compose["services"][name])["RUNHOURS_MQTT_URL"])
        assert (url.scheme, url.hostname, url.port) == ("mqtt", "mosquitto", port), name
        assert url.username in users and users[url.username] == url.password, name
        clients[name] = url.username
    # … and that user may do what the service does (wire contract v1 topics).
    telemetry = telemetry_topic("plant1", "line-a", "cnc-01")
    status = status_topic("plant1", "line-a", "cnc-01")
    ingest, edge, analytics = (acl[clients[n]] for n in ("ingest", "fleet", "analytics"))
    assert _allowed(ingest, "read", telemetry) and _allowed(ingest, "read", status)
    assert _allowed(ingest, "write", deadletter_topic(telemetry))
    assert not _allowed(ingest, "write", telemetry)
    assert _allowed(edge, "write", telemetry) and _allowed(edge, "write", status)
    assert not _allowed(edge, "read", telemetry)
    assert _allowed(analytics, "write", alert_topic("plant1", "vibration-critical", "cnc-01"))
    assert not _allowed(analytics, "write", telemetry)
    # The health check logs in as a user that may read $SYS.
    health = mosquitto["healthcheck"]["test"][-1]
    assert "-u ingest" in health and _allowed(acl["ingest"], "read", "$SYS/broker/uptime")
    assert _environment(mosquitto)["MQTT_HEALTH_PASSWORD"] == users["ingest"]


def test_database_credentials_agree(compose: dict[str, Any]) -> None:
    influx = _environment(compose["services"]["influxdb"])
    assert influx["INFLUXDB_HTTP_AUTH_ENABLED"] == "true"
    assert _mounts(compose["services"]["influxdb"])["/var/lib/influxdb"] == "influxdb-data"
    for name in sorted(RUNHOURS_SERVICES):
        variables = _environment(compose["services"][name])
        assert urlsplit(variables["RUNHOURS_INFLUX_URL"]).netloc == "influxdb:8086"
        assert variables["RUNHOURS_INFLUX_DB"] == influx["INFLUXDB_DB"]
        assert variables["RUNHOURS_INFLUX_USER"] == influx["INFLUXDB_USER"]
        assert variables["RUNHOURS_INFLUX_PASSWORD"] == influx["INFLUXDB_USER_PASSWORD"]
    assert compose["services"]["influxdb"]["ports"] == ["127.0.0.1:8086:8086"]


def _expand_grafana(value: Any, env: dict[str, str]) -> Any:
    """Grafana's provisioning substitution: $VAR and ${VAR} from its environment."""
    if isinstance(value, dict):
        return {k: _expand_grafana(v, env) for k, v in value.items()}
    if isinstance(value, list):
        return [_expand_grafana(v, env) for v in value]
    if isinstance(value, str):
        return re.sub(r"\$\{?(\w+)\}?", lambda m: env[m.group(1)], value)
    return value


def test_grafana_provisioning(compose: dict[str, Any]) -> None:
    grafana = compose["services"]["grafana"]
    env = _environment(grafana)
    mounts = _mounts(grafana)
    provisioning = REPO / mounts["/etc/grafana/provisioning"]
    assert provisioning == REPO / "deploy/grafana/provisioning"
    [datasource] = _expand_grafana(
        yaml.safe_load((provisioning / "datasources/influxdb.yaml").read_text())["datasources"],
        env,
    )
    influx = _environment(compose["services"]["influxdb"])
    assert datasource["uid"] == DATASOURCE_UID and datasource["type"] == "influxdb"
    assert datasource["url"] == "http://influxdb:8086"
    assert datasource["jsonData"]["dbName"] == influx["INFLUXDB_DB"]
    assert datasource["user"] == influx["INFLUXDB_READ_USER"]
    assert datasource["secureJsonData"]["password"] == influx["INFLUXDB_READ_USER_PASSWORD"]
    [provider] = yaml.safe_load((provisioning / "dashboards/runhours.yaml").read_text())[
        "providers"
    ]
    path = provider["options"]["path"]
    assert mounts[path] == "./dashboards/generated"
    home = env["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    assert home.startswith(path + "/")
    assert (REPO / "dashboards/generated" / home.removeprefix(path + "/")).exists()
    assert grafana["ports"] == ["3000:3000"]


def test_dockerfile() -> None:
    dockerfile = (REPO / "Dockerfile").read_text()
    [base] = re.findall(r"^FROM (\S+)", dockerfile, re.MULTILINE)
    assert re.fullmatch(r"python:3\.11\.\d+-slim-bookworm", base)
    copied = re.findall(r"^COPY (\S+) \./\1$", dockerfile, re.MULTILINE)
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())
    wanted = {p.rstrip("*") for p in pyproject["tool"]["setuptools"]["packages"]["find"]["include"]}
    assert wanted
    assert wanted | {"examples"} == set(copied)  # every package, and the rules file
    assert all((REPO / path).is_dir() for path in copied)
    assert 'ENTRYPOINT ["runhours"]' in dockerfile and "\nUSER runhours" in dockerfile
    assert "RUNHOURS_DATA_DIR=/var/lib/runhours" in dockerfile
    ignored = (REPO / ".dockerignore").read_text().split()
    assert {".env", ".venv", "var", ".git"} <= set(ignored)
