"""Run Mosquitto and InfluxDB from the system binaries as ordinary processes.

``runhours services up|down|status`` uses this, and so does the test suite, which
starts its own pair on free ports. Configs come from ``deploy/*/local*.conf.tmpl``;
data, logs and pid files live under the given state directory.

Two modes: open (anyone on this host may connect; tests and the quick demo) and secure
(``security=``: TLS and a login for everyone at the broker, the per-machine ACL, InfluxDB
with authentication and one least-privilege user per service; see docs/security.md).
"""

from __future__ import annotations

import contextlib
import getpass
import os
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from string import Template
from urllib.parse import urlsplit

import httpx

from common.errors import RunhoursError
from common.settings import RunhoursSettings
from runhours.security.layout import Meta, SecurityDir

DEPLOY_DIR = Path(__file__).resolve().parent.parent / "deploy"


class ServiceError(RunhoursError, RuntimeError):
    """A service could not be started or did not become ready."""


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def _port_open(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def _signal_then_kill(pid: int, sig: int, timeout: float, *, poll: float) -> bool:
    """Send ``sig`` and wait up to ``timeout`` s for the process to end (reaping it, every
    ``poll`` s), then SIGKILL it; whether it had to be killed."""
    os.kill(pid, sig)
    deadline = time.monotonic() + timeout
    while _pid_alive(pid) and time.monotonic() < deadline:
        _reap(pid)
        time.sleep(poll)
    if _pid_alive(pid):
        os.kill(pid, signal.SIGKILL)
        return True
    return False


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie (exited, not yet reaped) counts as gone.
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat.rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return True


@dataclass
class Service:
    """One server process: how to find its binary, start it and see that it answers."""

    name: str
    binary: str
    apt_package: str
    port: int
    host: str
    state_dir: Path

    @property
    def pid_file(self) -> Path:
        return self.state_dir / f"{self.name}.pid"

    @property
    def log_file(self) -> Path:
        return self.state_dir / f"{self.name}.out"

    def binary_path(self) -> str:
        found = shutil.which(self.binary) or next(
            (
                p
                for p in (f"/usr/sbin/{self.binary}", f"/usr/bin/{self.binary}")
                if Path(p).exists()
            ),
            None,
        )
        if not found:
            raise ServiceError(
                f"{self.binary} not found: install the Debian package with "
                f"`sudo apt-get install {self.apt_package}` (or run `make setup`)"
            )
        return found

    def pid(self) -> int | None:
        try:
            pid = int(self.pid_file.read_text().strip())
        except (OSError, ValueError):
            return None
        if not _pid_alive(pid):
            return None
        try:  # the pid may have been reused by an unrelated process
            if self.binary not in Path(f"/proc/{pid}/cmdline").read_bytes().decode(
                errors="replace"
            ):
                return None
        except OSError:
            pass
        return pid

    def ready(self) -> bool:
        return _port_open(self.host, self.port)

    def argv(self, binary: str, config: Path) -> list[str]:
        raise NotImplementedError

    def write_config(self) -> Path:
        raise NotImplementedError

    def start(self, timeout: float = 30.0) -> None:
        if self.pid() is not None:
            self.wait_ready(timeout)
            return
        if _port_open(self.host, self.port):
            raise ServiceError(
                f"{self.name}: port {self.port} on {self.host} is already in use by another "
                "process; choose another port (see `runhours services up --help`)"
            )
        binary = self.binary_path()
        self.state_dir.mkdir(parents=True, exist_ok=True)
        config = self.write_config()
        with self.log_file.open("ab") as log:
            process = subprocess.Popen(
                self.argv(binary, config),
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,  # outlives `runhours services up`
            )
        _STARTED[process.pid] = process
        self.pid_file.write_text(f"{process.pid}\n")
        self.wait_ready(timeout, process)

    def wait_ready(self, timeout: float, process: subprocess.Popen[bytes] | None = None) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.ready():
                return
            if process is not None and process.poll() is not None:
                break
            time.sleep(0.1)
        tail = self.log_file.read_text(errors="replace")[-2000:] if self.log_file.exists() else ""
        raise ServiceError(f"{self.name} did not become ready on port {self.port}; log:\n{tail}")

    def stop(self, timeout: float = 20.0, sig: int = signal.SIGTERM) -> None:
        pid = self.pid()
        if pid is None:
            self.pid_file.unlink(missing_ok=True)
            return
        if _signal_then_kill(pid, sig, timeout, poll=0.05):
            while _pid_alive(pid):
                _reap(pid)
                time.sleep(0.05)
        _reap(pid)
        self.pid_file.unlink(missing_ok=True)

    def kill(self) -> None:
        """SIGKILL, for failure tests."""
        self.stop(timeout=0, sig=signal.SIGKILL)


# The daemons this process started, until they are stopped: Python would otherwise warn, when
# a Popen object is collected, that its process still runs (it is meant to, detached).
_STARTED: dict[int, subprocess.Popen[bytes]] = {}


def _reap(pid: int) -> None:
    """Collect the exit status of ``pid`` if it is our child and has ended (no zombie)."""
    child = _STARTED.get(pid)
    if child is not None:
        if child.poll() is not None:
            del _STARTED[pid]
        return
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)


def _fill(template: str, **values: object) -> str:
    return Template((DEPLOY_DIR / template).read_text()).substitute(
        {k: str(v) for k, v in values.items()}
    )


def _render(template: str, target: Path, **values: object) -> Path:
    target.write_text(_fill(template, **values))
    return target


class Mosquitto(Service):
    security: SecurityDir | None = None
    mtls_port: int = 0

    def write_config(self) -> Path:
        data = self.state_dir / "mosquitto"
        data.mkdir(parents=True, exist_ok=True)
        if self.security is None:
            access = _fill("mosquitto/local-open.conf.tmpl", port=self.port, bind=self.host)
        else:
            access = _fill(
                "mosquitto/local-secure.conf.tmpl",
                port=self.port,
                mtls_port=self.mtls_port,
                bind=self.host,
                security_dir=self.security.root,
                acl_file=DEPLOY_DIR / "mosquitto" / "acl",
            )
        return _render(
            "mosquitto/local.conf.tmpl",
            self.state_dir / "mosquitto.conf",
            user=getpass.getuser(),
            access=access,
            data_dir=data.resolve(),
        )

    def argv(self, binary: str, config: Path) -> list[str]:
        return [binary, "-c", str(config)]


class InfluxDB(Service):
    rpc_port: int = 0
    auth: bool = False

    def write_config(self) -> Path:
        data = self.state_dir / "influxdb"
        data.mkdir(parents=True, exist_ok=True)
        return _render(
            "influxdb/local.conf.tmpl",
            self.state_dir / "influxdb.conf",
            port=self.port,
            rpc_port=self.rpc_port or free_port(self.host),
            bind=self.host,
            data_dir=data.resolve(),
            auth_enabled="true" if self.auth else "false",
        )

    def argv(self, binary: str, config: Path) -> list[str]:
        return [binary, "-config", str(config)]

    def ready(self) -> bool:
        try:
            return httpx.get(f"http://{self.host}:{self.port}/ping", timeout=1).status_code == 204
        except httpx.HTTPError:
            return False


class LocalServices:
    """The broker and the database, side by side under one state directory.

    With ``security`` (a ``SecurityDir``) the pair runs secure: ``up`` first creates what
    the directory lacks (CA, certificates, service passwords), then starts the broker with
    TLS listeners on ``mqtt_port`` (password) and ``mtls_port`` (client certificate), and
    InfluxDB with authentication and the services' users.
    """

    def __init__(
        self,
        state_dir: Path,
        mqtt_port: int = 1883,
        influx_port: int = 8086,
        host: str = "127.0.0.1",
        security: SecurityDir | None = None,
        mtls_port: int | None = None,
    ) -> None:
        self.state_dir = Path(state_dir)
        self.security = security
        self.mosquitto = Mosquitto(
            "mosquitto", "mosquitto", "mosquitto", mqtt_port, host, self.state_dir
        )
        self.influxdb = InfluxDB(
            "influxdb", "influxd", "influxdb", influx_port, host, self.state_dir
        )
        self.mosquitto.security = security
        self.mosquitto.mtls_port = mtls_port or mqtt_port + 1
        self.influxdb.auth = security is not None

    @classmethod
    def from_settings(
        cls,
        settings: RunhoursSettings,
        mqtt_port: int | None = None,
        influx_port: int | None = None,
        *,
        secure: bool | None = None,
        mtls_port: int | None = None,
    ) -> LocalServices:
        """The pair for ``settings``: state under ``<data_dir>/services``, the security
        directory of a secure pair under ``<data_dir>/security``. ``secure=None``: as last
        started. Ports not given: a secure pair's from its security directory (first
        start: 8883 and 8884), an open pair's from the configured URLs."""
        state_dir = settings.data_dir / "services"
        if secure is None:
            mode = state_dir / "mode"
            secure = mode.exists() and mode.read_text().strip() == "secure"
        security = SecurityDir(settings.data_dir / "security") if secure else None
        meta = security.meta() if security is not None and security.exists else None
        if mqtt_port is None:
            url = settings.mqtt
            mqtt_port = meta.broker_port if meta else 8883 if secure and not url.tls else url.port
        if mtls_port is None and meta is not None:
            mtls_port = meta.mtls_port
        if influx_port is None:
            configured = meta.influx_url if meta else settings.influx_url
            influx_port = urlsplit(configured).port or 8086
        return cls(state_dir, mqtt_port, influx_port, security=security, mtls_port=mtls_port)

    @property
    def secure(self) -> bool:
        return self.security is not None

    @property
    def services(self) -> tuple[Service, Service]:
        return (self.mosquitto, self.influxdb)

    @property
    def mqtt_url(self) -> str:
        scheme = "mqtts" if self.secure else "mqtt"
        return f"{scheme}://{self.mosquitto.host}:{self.mosquitto.port}"

    @property
    def mtls_url(self) -> str | None:
        return f"mqtts://{self.mosquitto.host}:{self.mosquitto.mtls_port}" if self.secure else None

    @property
    def influx_url(self) -> str:
        return f"http://{self.influxdb.host}:{self.influxdb.port}"

    @property
    def mode_file(self) -> Path:
        return self.state_dir / "mode"

    def running_mode(self) -> str | None:
        """``"open"`` or ``"secure"`` if either service runs under this state directory."""
        if all(s.pid() is None for s in self.services):
            return None
        return self.mode_file.read_text().strip() if self.mode_file.exists() else "open"

    def check_mode(self) -> None:
        """Refuse to mix modes: an open start beside a secure pair, or the reverse."""
        mode, running = ("secure" if self.secure else "open"), self.running_mode()
        if running not in (None, mode):
            raise ServiceError(
                f"the services under {self.state_dir} run {running}; stop them first "
                f"(`runhours services down`){' or add --secure' if running == 'secure' else ''}"
            )

    def up(self, timeout: float = 30.0, database: str = "runhours") -> list[str]:
        """Start both (if not running) and wait until they answer; returns what a secure
        start created (certificates, users), for the user."""
        self.check_mode()
        mode = "secure" if self.secure else "open"
        created: list[str] = []
        if self.security is not None:
            meta = self.security.meta() if self.security.exists else Meta()
            meta.broker_host = self.mosquitto.host
            meta.broker_port = self.mosquitto.port
            meta.mtls_port = self.mosquitto.mtls_port
            meta.influx_url = self.influx_url
            meta.influx_db = meta.influx_db if self.security.exists else database
            meta.data_dir = str(self.state_dir.parent.absolute())
            meta.broker_pid_file = str(self.mosquitto.pid_file.absolute())
            created += self.security.init(meta)
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.mode_file.write_text(f"{mode}\n")
        already = self.mosquitto.pid() is not None
        for service in self.services:
            service.start(timeout)
        if self.security is not None:
            from runhours.security.influx import ensure_users
            from runhours.security.mosquitto import reload_broker

            if already:  # it may hold an older password file (a rotated service password)
                reload_broker(self.mosquitto.pid_file)

            created += ensure_users(self.security, self.influx_url, self.security.meta().influx_db)
        return created

    @property
    def demo_pid_file(self) -> Path:
        """Where a running ``runhours demo`` on these services keeps its pid."""
        return self.state_dir / "demo.pid"

    def demo_pid(self) -> int | None:
        """The pid of a ``runhours demo`` running on these services, if one is."""
        try:
            pid = int(self.demo_pid_file.read_text().strip())
            command = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except (OSError, ValueError):
            return None
        if (
            not _pid_alive(pid)
            or b"demo" not in command
            or not any(b"runhours" in c for c in command)
        ):
            return None
        return pid

    def stop_demo(self, timeout: float = 90.0) -> bool:
        """Stop a running demo (SIGTERM: it publishes and stores what it holds, then exits;
        SIGKILL after ``timeout``); whether one was running."""
        pid = self.demo_pid()
        if pid is None:
            self.demo_pid_file.unlink(missing_ok=True)
            return False
        _signal_then_kill(pid, signal.SIGTERM, timeout, poll=0.1)
        self.demo_pid_file.unlink(missing_ok=True)
        return True

    def down(self) -> None:
        """Stop a running demo first (it uses both), then both services."""
        self.stop_demo()
        for service in self.services:
            service.stop()

    def status(self) -> dict[str, tuple[int | None, bool]]:
        """Per service: pid (None when not running) and whether its port answers."""
        return {s.name: (s.pid(), s.ready()) for s in self.services}
