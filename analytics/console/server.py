"""Serving the HTTP API with uvicorn in a background thread of the analytics process."""

from __future__ import annotations

import threading
import time

import uvicorn

from analytics.alerts.store import AlertStore
from analytics.console.api import create_app
from store import InfluxClient


class ConsoleServer:
    """uvicorn running ``create_app(store, influx)`` on ``host:port`` in a thread."""

    def __init__(
        self, store: AlertStore, influx: InfluxClient | None, host: str, port: int
    ) -> None:
        config = uvicorn.Config(
            create_app(store, influx), host=host, port=port, log_level="warning"
        )
        self.server = uvicorn.Server(config)
        self.url = f"http://{host}:{port}"
        self._thread = threading.Thread(target=self.server.run, name="console-http", daemon=True)

    def start(self, timeout: float = 10.0) -> None:
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self.server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"the HTTP console did not start on {self.url} (port in use?)")
            time.sleep(0.02)

    def stop(self) -> None:
        self.server.should_exit = True
        self._thread.join(10)
