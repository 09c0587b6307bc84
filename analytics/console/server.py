"""Serving the HTTP API with uvicorn in a background thread of the analytics process."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import uvicorn

from analytics.alerts.store import AlertStore
from analytics.console.api import create_app
from analytics.console.auth import Authenticator, AuthError, is_loopback
from analytics.downtime import DowntimeStore
from analytics.plant import Plant
from common.errors import RunhoursError
from store import InfluxClient


class ConsoleError(RunhoursError, RuntimeError):
    """The console cannot be served as configured; the message says how to fix it."""


class ConsoleServer:
    """uvicorn running ``create_app(…)`` on ``host:port`` in a thread.

    With ``users_file`` every route needs a login (``analytics.console.auth``); without
    one it serves loopback addresses only, and refuses any other. With ``plant`` and
    ``downtime`` it also lists stops and takes their reasons. ``tls_cert``/``tls_key``
    serve HTTPS (and make the session cookie HTTPS-only).
    """

    def __init__(
        self,
        store: AlertStore,
        influx: InfluxClient | None,
        host: str,
        port: int,
        *,
        users_file: Path | None = None,
        tls_cert: Path | None = None,
        tls_key: Path | None = None,
        plant: Plant | None = None,
        downtime: DowntimeStore | None = None,
    ) -> None:
        if users_file is None and not is_loopback(host):
            raise ConsoleError(
                f"refusing to serve the alert console on {host}: beyond loopback it needs "
                "logins. Create a user (`runhours users add NAME --role operator`) and set "
                "[analytics] users_file (RUNHOURS_ANALYTICS__USERS_FILE), or listen on "
                "127.0.0.1"
            )
        try:
            auth = Authenticator(users_file) if users_file is not None else None
        except (AuthError, OSError) as exc:
            raise ConsoleError(f"console users: {exc}") from None
        self.authenticated = auth is not None
        tls = tls_cert is not None
        config = uvicorn.Config(
            create_app(store, influx, auth, secure_cookie=tls, plant=plant, downtime=downtime),
            host=host,
            port=port,
            log_level="warning",
            ssl_certfile=str(tls_cert) if tls_cert else None,
            ssl_keyfile=str(tls_key) if tls_key else None,
        )
        self.server = uvicorn.Server(config)
        self.url = f"{'https' if tls else 'http'}://{host}:{port}"
        self._thread = threading.Thread(target=self.server.run, name="console-http", daemon=True)

    def start(self, timeout: float = 10.0) -> None:
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self.server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise ConsoleError(f"the HTTP console did not start on {self.url} (port in use?)")
            time.sleep(0.02)

    def serve(self) -> None:
        """Serve in this thread until interrupted."""
        self.server.run()

    def stop(self) -> None:
        self.server.should_exit = True
        self._thread.join(10)
