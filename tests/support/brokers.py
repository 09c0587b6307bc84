"""Private Mosquitto brokers for tests that need a broker configured their own way.

``tls_broker`` is a fixture shared by the edge and ingest tests; tests/conftest.py loads
this module as a plugin so every test can ask for it by name.
"""

from __future__ import annotations

import getpass
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from runhours.services import free_port
from tests.support.waiting import port_open, wait_until


@contextmanager
def running_mosquitto(config: Path, port: int) -> Iterator[subprocess.Popen[bytes]]:
    """Mosquitto on ``config`` until the block ends, yielded once it accepts on ``port``.

    The config logs to ``mosquitto.log`` beside it: that log is the failure message.
    """
    process = subprocess.Popen(
        ["mosquitto", "-c", str(config)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        log = config.parent / "mosquitto.log"
        assert wait_until(lambda: port_open(port), 10), log.read_text() if log.exists() else ""
        yield process
    finally:
        process.terminate()
        process.wait(10)


@pytest.fixture
def tls_broker(tmp_path: Path) -> Iterator[tuple[int, Path]]:
    """A private Mosquitto with TLS only and a password file (user ``edge``, ``s3cret``)."""
    d = tmp_path / "tls"
    d.mkdir()

    def openssl(*args: str) -> None:
        subprocess.run(["openssl", *args], cwd=d, check=True, capture_output=True)

    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    openssl("req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.pem", "-subj", "/CN=test-ca")
    openssl("req", *ec, "-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=127.0.0.1")
    (d / "san.ext").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    openssl(
        "x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
        "-CAcreateserial", "-out", "server.pem", "-days", "2", "-extfile", "san.ext",
    )  # fmt: skip
    passwd = d / "passwd"
    passwd.touch(mode=0o600)
    subprocess.run(["mosquitto_passwd", "-b", str(passwd), "edge", "s3cret"], check=True)
    port = free_port()
    (d / "mosquitto.conf").write_text(
        f"user {getpass.getuser()}\nlistener {port} 127.0.0.1\n"
        f"cafile {d}/ca.pem\ncertfile {d}/server.pem\nkeyfile {d}/server.key\n"
        f"allow_anonymous false\npassword_file {passwd}\nlog_dest file {d}/mosquitto.log\n"
    )
    with running_mosquitto(d / "mosquitto.conf", port):
        yield port, d / "ca.pem"
