"""Run Mosquitto and InfluxDB from the system binaries as ordinary processes.

``runhours services up|down|status`` uses this, and so does the test suite, which
starts its own pair on free ports. Configs come from ``deploy/*/local.conf.tmpl``;
data, logs and pid files live under the given state directory.
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

from contract.settings import RunhoursSettings

DEPLOY_DIR = Path(__file__).resolve().parent.parent / "deploy"


class ServiceError(RuntimeError):
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
        os.kill(pid, sig)
        deadline = time.monotonic() + timeout
        while _pid_alive(pid) and time.monotonic() < deadline:
            _reap(pid)
            time.sleep(0.05)
        if _pid_alive(pid):
            os.kill(pid, signal.SIGKILL)
            while _pid_alive(pid):
                _reap(pid)
                time.sleep(0.05)
        _reap(pid)
        self.pid_file.unlink(missing_ok=True)

    def kill(self) -> None:
        """SIGKILL, for failure tests."""
        self.stop(timeout=0, sig=signal.SIGKILL)


def _reap(pid: int) -> None:
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)


def _render(template: str, target: Path, **values: object) -> Path:
    text = Template((DEPLOY_DIR / template).read_text()).substitute(
        {k: str(v) for k, v in values.items()}
    )
    target.write_text(text)
    return target


class Mosquitto(Service):
    def write_config(self) -> Path:
        data = self.state_dir / "mosquitto"
        data.mkdir(parents=True, exist_ok=True)
        return _render(
            "mosquitto/local.conf.tmpl",
            self.state_dir / "mosquitto.conf",
            user=getpass.getuser(),
            port=self.port,
            bind=self.host,
            data_dir=data.resolve(),
        )

    def argv(self, binary: str, config: Path) -> list[str]:
        return [binary, "-c", str(config)]


class InfluxDB(Service):
    rpc_port: int = 0

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
        )

    def argv(self, binary: str, config: Path) -> list[str]:
        return [binary, "-config", str(config)]

    def ready(self) -> bool:
        try:
            return httpx.get(f"http://{self.host}:{self.port}/ping", timeout=1).status_code == 204
        except httpx.HTTPError:
            return False


class LocalServices:
    """The broker and the database, side by side under one state directory."""

    def __init__(
        self,
        state_dir: Path,
        mqtt_port: int = 1883,
        influx_port: int = 8086,
        host: str = "127.0.0.1",
    ) -> None:
        self.state_dir = Path(state_dir)
        self.mosquitto = Mosquitto(
            "mosquitto", "mosquitto", "mosquitto", mqtt_port, host, self.state_dir
        )
        self.influxdb = InfluxDB(
            "influxdb", "influxd", "influxdb", influx_port, host, self.state_dir
        )

    @classmethod
    def from_settings(
        cls,
        settings: RunhoursSettings,
        mqtt_port: int | None = None,
        influx_port: int | None = None,
    ) -> LocalServices:
        """The pair for ``settings``: state under ``<data_dir>/services``, ports from the
        configured URLs unless given."""
        return cls(
            settings.data_dir / "services",
            mqtt_port or settings.mqtt.port,
            influx_port or urlsplit(settings.influx_url).port or 8086,
        )

    @property
    def services(self) -> tuple[Service, Service]:
        return (self.mosquitto, self.influxdb)

    @property
    def mqtt_url(self) -> str:
        return f"mqtt://{self.mosquitto.host}:{self.mosquitto.port}"

    @property
    def influx_url(self) -> str:
        return f"http://{self.influxdb.host}:{self.influxdb.port}"

    def up(self, timeout: float = 30.0) -> None:
        for service in self.services:
            service.start(timeout)

    def down(self) -> None:
        for service in self.services:
            service.stop()

    def status(self) -> dict[str, tuple[int | None, bool]]:
        """Per service: pid (None when not running) and whether its port answers."""
        return {s.name: (s.pid(), s.ready()) for s in self.services}
