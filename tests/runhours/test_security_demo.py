"""A secure run, end to end, scanned for secrets: `runhours services up --secure`, machine
identities, a console token, `runhours demo --secure`, then the ingest, analytics (with a
webhook URL carrying a token, failing) and an edge agent as processes at debug/info log
level. Every line they print, the broker's and InfluxDB's logs, and every `--help` (with
secrets in the environment) are searched for every generated secret: none may appear.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import tomllib
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import typer
from typer.testing import CliRunner

from analytics.alerts import Alert, AlertStore, Transition
from runhours.cli import app as cli
from runhours.security import SecurityDir
from runhours.services import free_port
from tests.support.paths import REPO

WEBHOOK_TOKEN = "wh-T0KEN-5b1f0c9e2a7d"


def base_env(data_dir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RUNHOURS_")}
    return {**env, "RUNHOURS_DATA_DIR": str(data_dir), "COLUMNS": "200"}


def runhours(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "runhours", *args],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip


class Service:
    """A runhours command as a process, its stderr and stdout in files."""

    def __init__(self, env: dict[str, str], log: Path, *args: str) -> None:
        self.log = log
        self.out = log.open("wb")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "runhours", *args],
            cwd=REPO, env=env, stdout=self.out, stderr=subprocess.STDOUT,
        )  # fmt: skip

    def text(self) -> str:
        return self.log.read_text(errors="replace")

    def wait_for(self, marker: str, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while marker not in self.text():
            assert self.process.poll() is None, f"exited: {self.text()[-3000:]}"
            assert time.monotonic() < deadline, f"no {marker!r} in: {self.text()[-3000:]}"
            time.sleep(0.1)

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        code = self.process.wait(60)
        self.out.close()
        return code


def help_outputs(env: dict[str, str]) -> dict[str, str]:
    """``--help`` of every command and subcommand, in-process."""
    root = typer.main.get_command(cli)
    runner = CliRunner()
    outputs: dict[str, str] = {}

    def walk(command: Any, path: list[str]) -> None:
        result = runner.invoke(cli, [*path, "--help"], env=env)
        assert result.exit_code == 0, (path, result.output)
        outputs[" ".join(path) or "runhours"] = result.output
        for name, sub in getattr(command, "commands", {}).items():  # a group
            walk(sub, [*path, name])

    walk(root, [])
    return outputs


@pytest.fixture
def secure_run(tmp_path: Path) -> Iterator[tuple[Path, dict[str, str]]]:
    data = tmp_path / "var"
    env = base_env(data)
    yield data, env
    runhours(env, "services", "down")


def test_a_secure_demo_prints_no_secret(secure_run: tuple[Path, dict[str, str]]) -> None:
    data, env = secure_run
    began = time.monotonic()

    def lap(what: str) -> None:
        print(f"{time.monotonic() - began:6.1f} s  {what}")

    texts: dict[str, str] = {}
    ports = [str(free_port()) for _ in range(3)]
    up = runhours(
        env, "services", "up", "--secure",
        "--mqtt-port", ports[0], "--influx-port", ports[1], "--mtls-port", ports[2],
    )  # fmt: skip
    assert up.returncode == 0, up.stderr
    texts["services up --secure"] = up.stdout + up.stderr
    security = SecurityDir(data / "security")
    lap("services up --secure")

    # Machine identities (their settings files are the command's output: --no-print here).
    for args in (["--machine", "plant1/line-z/edge-01"], ["--machine", "plant1/line-z/edge-02", "--cert"]):  # fmt: skip
        made = runhours(env, "credentials", "add", *args, "--no-print")
        assert made.returncode == 0, made.stderr
        texts[f"credentials add {args}"] = made.stdout + made.stderr
    listed = runhours(env, "credentials", "list")
    texts["credentials list"] = listed.stdout + listed.stderr
    token = runhours(env, "users", "token", "admin")
    assert token.returncode == 0 and token.stdout.startswith("rht_"), token.stderr
    texts["users token (stderr)"] = token.stderr  # its stdout is the token, shown once
    users = runhours(env, "users", "list")
    texts["users list"] = users.stdout + users.stderr

    demo = runhours(
        env, "demo", "--secure", "--machines", "3", "--days", "1", "--start", "2026-03-02"
    )
    assert demo.returncode == 0, demo.stderr[-3000:]
    assert "lost: 0" in demo.stdout and "one identity per machine" in demo.stdout
    texts["demo --secure"] = demo.stdout + demo.stderr
    lap("credentials, users, demo --secure")

    # The services as processes, talkative.
    ingest = Service(
        {**env, "RUNHOURS_INGEST__CLIENT_ID": "scan-ingest"},
        data / "ingest.log",
        "ingest", "--config", str(security.role_file("ingest")), "--log-level", "debug",
    )  # fmt: skip
    hook = f"http://127.0.0.1:{free_port()}/hooks/{WEBHOOK_TOKEN}?token={WEBHOOK_TOKEN}"
    console_port = free_port()
    analytics = Service(
        {
            **env,
            "RUNHOURS_ANALYTICS__WEBHOOK_URL": hook,
            "RUNHOURS_ANALYTICS__RETRY_BASE": "0.1",
            "RUNHOURS_ANALYTICS__ROLLUPS": "false",  # not on trial here, and slow at first
        },
        data / "analytics.log",
        "analytics", "--config", str(security.role_file("analytics")),
        "--http-port", str(console_port), "--interval", "0.5", "--log-level", "debug",
    )  # fmt: skip
    edge = Service(
        env,
        data / "edge.log",
        "edge", "--config", str(security.edge_dir / "plant1/line-z/edge-01.toml"), "--verbose",
    )  # fmt: skip
    try:
        ingest.wait_for("ready: worker scan-ingest")
        analytics.wait_for("alert console on")
        # A transition for the webhook to (fail to) deliver, logged with its URL.
        since = datetime(2026, 3, 2, tzinfo=UTC)
        alert = Alert(
            id="scan000001", rule="scan", rule_kind="threshold", machine="cnc-01",
            site="plant1", line="line-a", severity="warning", state="firing",
            pending_since=since, started_at=since,
        )  # fmt: skip
        AlertStore.in_data_dir(data).record([Transition("firing", since, alert)])
        analytics.wait_for("outbox webhook: attempt 2 failed")
        edge.wait_for("edge agent plant1/line-z/edge-01")
        url = f"http://127.0.0.1:{console_port}"
        admin = security.secrets()["console"]["admin"]
        with httpx.Client(base_url=url) as http:
            assert http.post("/api/session", json={"user": "admin", "password": "wrong-one-1234"}).status_code == 401  # fmt: skip
            assert http.post("/api/session", json={"user": "admin", "password": admin}).status_code == 200  # fmt: skip
            assert http.get("/api/alerts").status_code == 200
        assert httpx.get(f"{url}/api/alerts", headers={"Authorization": f"Bearer {token.stdout.strip()}"}).status_code == 200  # fmt: skip
    finally:
        codes = [s.stop() for s in (edge, analytics, ingest)]
    assert codes == [0, 0, 0], [s.text()[-2000:] for s in (edge, analytics, ingest)]
    texts.update(ingest=ingest.text(), analytics=analytics.text(), edge=edge.text())
    lap("ingest, analytics and edge processes")
    services = data / "services"
    for log in (services / "mosquitto" / "mosquitto.log", services / "mosquitto.out", services / "influxdb.out"):  # fmt: skip
        texts[str(log.relative_to(data))] = log.read_text(errors="replace")
    # Every --help, with secrets where a default could come from.
    secrets_env = {
        **env,
        "RUNHOURS_MQTT_PASSWORD": security.secrets()["mqtt"]["ingest"],
        "RUNHOURS_INFLUX_PASSWORD": security.secrets()["influx"]["ingest"],
        "RUNHOURS_ANALYTICS__WEBHOOK_URL": hook,
    }
    helps = help_outputs(secrets_env)
    texts.update({f"--help {k}": v for k, v in helps.items()})
    lap(f"{len(helps)} --help outputs")

    # Every generated secret: service, InfluxDB and console passwords, machine passwords,
    # private keys, the console token, the webhook's token.
    secrets = {f"{group}.{name}": value for group, items in security.secrets().items() for name, value in items.items()}  # fmt: skip
    for path in security.edge_dir.rglob("*.toml"):
        password = tomllib.loads(path.read_text()).get("mqtt_password")
        if password:
            secrets[f"machine {path.relative_to(security.edge_dir)}"] = password
    for key in [security.ca.key_file, security.server_key, *security.edge_dir.rglob("*.key")]:
        body = "".join(key.read_text().splitlines()[1:-1])
        secrets[f"key {key.name}"] = body[:40]  # a stretch of the key material
    secrets["console token"] = token.stdout.strip()
    secrets["webhook token"] = WEBHOOK_TOKEN
    assert len(secrets) >= 15 and all(len(v) >= 16 for v in secrets.values()), secrets.keys()

    hits = {
        (secret, where): text.count(value)
        for secret, value in secrets.items()
        for where, text in texts.items()
        if value in text
    }
    scanned = sum(len(t) for t in texts.values())
    print(f"scanned {len(texts)} outputs ({len(helps)} --help), {scanned} characters, "
          f"for {len(secrets)} secrets: {sum(hits.values())} hits")  # fmt: skip
    assert hits == {}

    # And they are there, masked: the URL with ***, the webhook as its origin only.
    assert f"mqtts://ingest:***@127.0.0.1:{ports[0]}" in texts["ingest"]
    assert f"webhook http://127.0.0.1:{hook.split(':')[2].split('/')[0]}: ConnectError" in texts["analytics"]  # fmt: skip
    assert "logins required" in texts["analytics"]
    assert len(helps) >= 40
