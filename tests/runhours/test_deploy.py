"""The Docker deployment, checked by reading it: no Docker engine runs here.

`docker` on this machine is a client without an engine and without the compose plugin,
so nothing is built or started. Instead the files are parsed and cross-checked:
docker-compose.yml (with .env.example's values interpolated the way compose does, and
./secrets made by the real `runhours credentials init --compose`), the Dockerfile,
Mosquitto's config and ACL, and Grafana's provisioning. Every file a service mounts
exists; every RUNHOURS_* variable is a field of the settings model the service's command
reads; every command line parses with the real CLI; ports, users and passwords agree
between the services that must share them (the broker's password hashes are checked
against each service's password).
"""

from __future__ import annotations

import re
import tomllib
import typing
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import typer
import yaml
from pydantic import BaseModel

from analytics.console.auth import read_users
from analytics.service import AnalyticsSettings
from common.settings import RunhoursSettings, load_settings
from dashboards import DATASOURCE_UID
from edge.config import EdgeSettings
from ingest.config import IngestSettings
from runhours.cli import app
from runhours.security import SecurityDir
from runhours.security.compose import init_compose
from runhours.security.layout import ROLES
from runhours.security.mosquitto import check_password
from simulators import fleet
from tests.support.deploy import read_env_file
from tests.support.paths import REPO
from wire import MachineRef, alert_topic, deadletter_topic, status_topic, telemetry_topic

# Which settings model each `runhours <command>` of the compose file reads.
SETTINGS: dict[str, type[RunhoursSettings]] = {
    "ingest": IngestSettings,
    "analytics": AnalyticsSettings,
    "simulate": EdgeSettings,
}
RUNHOURS_SERVICES = {"ingest", "analytics", "fleet"}

_VAR = re.compile(r"\$\$|\$\{(\w+)(?::?([-?])([^}]*))?\}|\$(\w+)")


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


FLEET = [  # the machines `runhours simulate --machines 12` publishes for
    MachineRef(s.site, s.line, s.machine)
    for s in fleet(12, start=datetime(2026, 1, 1, tzinfo=UTC), site="plant1")
]


@pytest.fixture(scope="module")
def secrets(tmp_path_factory: pytest.TempPathFactory) -> SecurityDir:
    """./secrets as `runhours credentials init --compose --fleet 12` makes it."""
    security = SecurityDir(tmp_path_factory.mktemp("deploy") / "secrets")
    init_compose(security, public_names=["broker.example.com"], fleet=FLEET)
    return security


def _host_path(source: str, secrets: SecurityDir | None = None) -> Path:
    """A compose file's host path: under the repository, or under the generated ./secrets."""
    if secrets is not None and source.startswith("./secrets/"):
        return secrets.root / source.removeprefix("./secrets/")
    return REPO / source


def _environment(service: dict[str, Any], secrets: SecurityDir | None = None) -> dict[str, str]:
    """The container's environment: its env_file (from ./secrets) and its `environment`."""
    values: dict[str, str] = {}
    if secrets is not None and "env_file" in service:
        values.update(read_env_file(_host_path(service["env_file"], secrets)))
    environment = service.get("environment", {})
    if isinstance(environment, list):
        environment = dict(item.split("=", 1) for item in environment)
    values.update({k: str(v) for k, v in environment.items()})
    return values


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


def test_mounted_files_exist_and_volumes_are_named(
    compose: dict[str, Any], secrets: SecurityDir
) -> None:
    declared = set(compose["volumes"])
    used = set()
    for name, service in compose["services"].items():
        if "env_file" in service:
            assert service["env_file"].startswith("./secrets/compose/"), name
            assert _host_path(service["env_file"], secrets).exists(), name
        for target, source in _mounts(service).items():
            if source.startswith("."):
                path = _host_path(source, secrets)
                assert path.exists(), f"{name} mounts missing {source} at {target}"
                # Never the CA's key, the password list or the containers' env files.
                private = ("./secrets", "./secrets/compose", "./secrets/ca.key", "./secrets/secrets.toml")  # fmt: skip
                assert source.rstrip("/") not in private, (name, source)
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
    compose: dict[str, Any], secrets: SecurityDir, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in sorted(RUNHOURS_SERVICES):
        service = compose["services"][name]
        settings_cls = SETTINGS[_command(service)[0]]
        variables = _environment(service, secrets)
        assert {"RUNHOURS_MQTT_URL", "RUNHOURS_MQTT_CA_FILE"} <= set(variables)
        if name != "fleet":  # the fleet only publishes
            assert {"RUNHOURS_INFLUX_URL", "RUNHOURS_INFLUX_DB"} <= set(variables)
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
        assert settings.mqtt.tls and settings.mqtt.host == "mosquitto"
        if name != "fleet":
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
    # Loopback on the host unless ANALYTICS_BIND says otherwise.
    assert compose["services"]["analytics"]["ports"] == [f"127.0.0.1:8080:{port}"]
    assert (
        f"127.0.0.1:{port}/api/alerts"
        in compose["services"]["analytics"]["healthcheck"]["test"][-1]
    )
    fleet = _command(compose["services"]["fleet"])
    assert fleet[fleet.index("--speed") + 1] == "max" and "--live" in fleet
    assert fleet[fleet.index("--plant") + 1] == "/app/examples/plant.toml"
    plant = _environment(compose["services"]["analytics"])["RUNHOURS_ANALYTICS__PLANT"]
    assert plant == "/app/examples/plant.toml" and (REPO / "examples/plant.toml").exists()


def _mosquitto_conf() -> dict[str, list[str]]:
    conf: dict[str, list[str]] = {}
    for line in (REPO / "deploy/mosquitto/mosquitto.conf").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            key, _, value = line.partition(" ")
            conf.setdefault(key, []).append(value.strip())
    return conf


@dataclass
class Acl:
    """deploy/mosquitto/acl: per user its (access, filter) rules, and the patterns."""

    users: dict[str, list[tuple[str, str]]]
    patterns: list[tuple[str, str]]

    def rules(self, user: str) -> list[tuple[str, str]]:
        own = self.users.get(user, [])
        return own + [(a, f.replace("%u", user)) for a, f in self.patterns]


def _acl() -> Acl:
    acl = Acl({}, [])
    user = ""
    for line in (REPO / "deploy/mosquitto/acl").read_text().splitlines():
        words = line.split()
        if not words or words[0].startswith("#"):
            continue
        assert words[0] != "topic" or user, f"{line!r} would apply to anonymous clients"
        if words[0] == "user":
            user = words[1]
            acl.users[user] = []
        elif words[0] == "pattern":
            assert words[1] in ("read", "write", "readwrite"), line
            acl.patterns.append((words[1], words[2]))
        else:
            assert words[0] == "topic" and words[1] in ("read", "write", "readwrite", "deny"), line
            acl.users[user].append((words[1], words[2]))
    return acl


def _matches(topic_filter: str, topic: str) -> bool:
    pattern, parts = topic_filter.split("/"), topic.split("/")
    for i, level in enumerate(pattern):
        if level == "#":
            return True
        if i >= len(parts) or (level != "+" and level != parts[i]):
            return False
    return len(pattern) == len(parts)


def _allowed(rules: list[tuple[str, str]], access: str, topic: str) -> bool:
    """Mosquitto's decision: a matching deny wins; else any matching grant."""
    if any(a == "deny" and _matches(f, topic) for a, f in rules):
        return False
    return any(_matches(f, topic) and (a == access or a == "readwrite") for a, f in rules)


def test_broker_tls_acl_and_credentials_agree(
    compose: dict[str, Any], secrets: SecurityDir
) -> None:
    conf = _mosquitto_conf()
    assert conf["allow_anonymous"] == ["false"]
    assert int(conf["max_queued_messages"][0]) > 1000  # the default drops after 1000
    assert conf["listener"] == ["8883 0.0.0.0", "8884 0.0.0.0"]  # TLS only, no 1883
    assert len(conf["certfile"]) == len(conf["keyfile"]) == 2
    assert conf["require_certificate"] == ["true"] and conf["use_identity_as_username"] == ["true"]
    mosquitto = compose["services"]["mosquitto"]
    mounts = _mounts(mosquitto)
    assert mounts["/mosquitto/config/mosquitto.conf"] == "./deploy/mosquitto/mosquitto.conf"
    assert mounts[conf["acl_file"][0]] == "./deploy/mosquitto/acl"
    assert mounts["/run/runhours/broker"] == "./secrets/broker"
    entrypoint = (REPO / mounts[mosquitto["entrypoint"][-1]]).read_text()
    installed = conf["password_file"][0].rsplit("/", 1)[0]
    assert f"TARGET=${{TARGET:-{installed}}}" in entrypoint
    assert "CONFIG=${CONFIG:-/mosquitto/config/mosquitto.conf}" in entrypoint
    for path in [*conf["cafile"], *conf["certfile"], *conf["keyfile"], *conf["crlfile"]]:
        assert path.startswith(installed + "/"), path  # what the entrypoint installs
    assert mosquitto["ports"] == ["8883:8883", "8884:8884"]

    # Each service logs in over TLS with a user the password file knows, with its password.
    passwd = secrets.passwd.entries()
    acl = _acl()
    clients = {}
    for name in sorted(RUNHOURS_SERVICES - {"fleet"}):
        variables = _environment(compose["services"][name], secrets)
        url = urlsplit(variables["RUNHOURS_MQTT_URL"])
        assert (url.scheme, url.hostname, url.port) == ("mqtts", "mosquitto", 8883), name
        assert url.username is not None and url.password is None, name  # never in the URL
        assert check_password(variables["RUNHOURS_MQTT_PASSWORD"], passwd[url.username]), name
        clients[name] = url.username
    # The fleet: no account of its own, one identity per machine.
    fleet = compose["services"]["fleet"]
    assert urlsplit(_environment(fleet)["RUNHOURS_MQTT_URL"]).username is None
    assert _mounts(fleet)["/run/runhours/edge"] == "./secrets/edge"
    machines = {u for u in passwd if "/" in u}
    assert machines == {"/".join(ref) for ref in FLEET}
    for ref in FLEET:
        snippet = secrets.edge_dir / ref.site / ref.line / f"{ref.machine}.toml"
        settings = load_settings(EdgeSettings, snippet)
        assert check_password(settings.mqtt.password or "", passwd["/".join(ref)])
        assert settings.mqtt.host == "broker.example.com" and settings.edge.ref == ref

    # … and each may do what it does, nothing more (wire contract v1 topics).
    telemetry = telemetry_topic("plant1", "line-a", "cnc-01")
    status = status_topic("plant1", "line-a", "cnc-01")
    alert = alert_topic("plant1", "vibration-critical", "cnc-01")
    ingest, analytics = acl.rules(clients["ingest"]), acl.rules(clients["analytics"])
    assert _allowed(ingest, "read", telemetry) and _allowed(ingest, "read", status)
    assert _allowed(ingest, "write", deadletter_topic(telemetry))
    assert _allowed(ingest, "write", "runhours/v1/ingest/runhours-ingest-1/state")
    assert _allowed(ingest, "read", "$SYS/broker/load/publish/dropped/1min")
    assert _allowed(ingest, "write", "runhours/v1/probe/x") and _allowed(ingest, "read", "runhours/v1/probe/x")  # fmt: skip
    assert not _allowed(ingest, "write", telemetry) and not _allowed(ingest, "write", status)
    assert _allowed(analytics, "write", alert) and _allowed(analytics, "read", alert)
    assert not _allowed(analytics, "write", telemetry)
    # a telemetry topic of a line called "alerts" has the alert topics' shape: denied
    assert not _allowed(analytics, "write", "runhours/v1/plant1/alerts/m/telemetry")
    cnc01 = acl.rules("plant1/line-a/cnc-01")
    assert _allowed(cnc01, "write", telemetry) and _allowed(cnc01, "write", status)
    assert _allowed(cnc01, "read", "runhours/v1/ingest/runhours-ingest-1/state")
    other = telemetry_topic("plant1", "line-a", "cnc-02")
    assert not _allowed(cnc01, "write", other) and not _allowed(cnc01, "read", telemetry)
    assert not _allowed(cnc01, "write", deadletter_topic(other)) and not _allowed(
        cnc01, "write", alert
    )
    # Nobody but a service account may read the $SYS tree or others' telemetry.
    assert not _allowed(cnc01, "read", "$SYS/broker/uptime")
    assert not _allowed(cnc01, "write", "runhours/v1/probe/x")
    # The health check logs in as the ingest (it may read $SYS), over TLS.
    health = mosquitto["healthcheck"]["test"][-1]
    assert "-u ingest" in health and "-p 8883" in health and "--cafile" in health
    env = _environment(mosquitto, secrets)
    assert check_password(env["MQTT_HEALTH_PASSWORD"], passwd["ingest"])


def test_database_users_have_one_role_each(compose: dict[str, Any], secrets: SecurityDir) -> None:
    service = compose["services"]["influxdb"]
    influx = _environment(service, secrets)
    assert influx["INFLUXDB_HTTP_AUTH_ENABLED"] == "true"
    assert _mounts(service)["/var/lib/influxdb"] == "influxdb-data"
    # The image makes the admin; init-users.sh the others (run for real in
    # test_deploy_influxdb.py), with the passwords of the env file.
    script = _mounts(service)["/docker-entrypoint-initdb.d/runhours-users.sh"]
    assert script == "./deploy/influxdb/init-users.sh"
    # The same privileges as `runhours services up --secure` gives (runhours/security/layout.py).
    lines = re.findall(
        r'^runhours_user (\w+) (\w+) "[^"]*" ?(\w*)$', (REPO / script).read_text(), re.M
    )
    granted = {name: (privilege, state or None) for name, privilege, state in lines}
    assert granted == {
        role.name: (role.influx, role.influx_state)
        for role in ROLES
        if role.influx not in (None, "ADMIN")
    }
    assert granted["ingest"] == ("WRITE", "ALL")  # write-only on the telemetry
    for name in sorted(RUNHOURS_SERVICES - {"fleet"}):
        variables = _environment(compose["services"][name], secrets)
        assert urlsplit(variables["RUNHOURS_INFLUX_URL"]).netloc == "influxdb:8086"
        assert variables["RUNHOURS_INFLUX_DB"] == influx["INFLUXDB_DB"]
        user = variables["RUNHOURS_INFLUX_USER"]
        assert user == name and user in granted
        assert variables["RUNHOURS_INFLUX_PASSWORD"] == influx[f"{user.upper()}_INFLUX_PASSWORD"]
    fleet = _environment(compose["services"]["fleet"])
    assert not any(k.startswith("RUNHOURS_INFLUX") for k in fleet)  # it only publishes
    passwords = [v for k, v in influx.items() if k.endswith("PASSWORD")]
    assert len(passwords) == len(set(passwords)) == 4  # admin + three roles
    assert service["ports"] == ["127.0.0.1:8086:8086"]


def test_the_console_needs_logins_and_stays_on_loopback(
    compose: dict[str, Any], secrets: SecurityDir
) -> None:
    analytics = compose["services"]["analytics"]
    env = _environment(analytics, secrets)
    users_file = env["RUNHOURS_ANALYTICS__USERS_FILE"]
    folder, _, name = users_file.rpartition("/")
    source = _mounts(analytics)[folder]
    assert _host_path(f"{source}/{name}", secrets) == secrets.console_users
    admin = read_users(secrets.console_users)["admin"]
    assert admin.role == "operator" and admin.password and admin.password.startswith("$argon2id$")
    assert analytics["ports"][0].startswith("127.0.0.1:")
    assert "x.code != 401" in analytics["healthcheck"]["test"][-1]


def _expand_grafana(value: Any, env: dict[str, str]) -> Any:
    """Grafana's provisioning substitution: $VAR and ${VAR} from its environment."""
    if isinstance(value, dict):
        return {k: _expand_grafana(v, env) for k, v in value.items()}
    if isinstance(value, list):
        return [_expand_grafana(v, env) for v in value]
    if isinstance(value, str):
        return re.sub(r"\$\{?(\w+)\}?", lambda m: env[m.group(1)], value)
    return value


def test_grafana_provisioning(compose: dict[str, Any], secrets: SecurityDir) -> None:
    grafana = compose["services"]["grafana"]
    env = _environment(grafana, secrets)
    mounts = _mounts(grafana)
    provisioning = REPO / mounts["/etc/grafana/provisioning"]
    assert provisioning == REPO / "deploy/grafana/provisioning"
    [datasource] = _expand_grafana(
        yaml.safe_load((provisioning / "datasources/influxdb.yaml").read_text())["datasources"],
        env,
    )
    influx = _environment(compose["services"]["influxdb"], secrets)
    assert datasource["uid"] == DATASOURCE_UID and datasource["type"] == "influxdb"
    assert datasource["url"] == "http://influxdb:8086"
    assert datasource["jsonData"]["dbName"] == influx["INFLUXDB_DB"]
    assert datasource["user"] == "grafana"  # the READ-only user of init-users.sh
    assert datasource["secureJsonData"]["password"] == influx["GRAFANA_INFLUX_PASSWORD"]
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
