"""What every fault scenario needs: the ingest as a real process, proxies that cut or slow a
link, a paced fleet, and the figures each scenario reports.

Everything here is real: Mosquitto and InfluxDB from the test suite's ``own_services``,
``runhours ingest`` as a subprocess (so it can be SIGKILLed), in-process edge agents that
speak MQTT through a TCP proxy when a scenario cuts them off.
"""

from __future__ import annotations

import asyncio
import contextlib
import getpass
import http.server
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from common.settings import RunhoursSettings
from edge.config import EdgeOptions, EdgeSettings
from runhours.fleet import FleetRun, run_fleet
from runhours.services import Mosquitto, free_port
from simulators import MachineSpec
from store import InfluxClient
from tests.support.paths import REPO
from tests.support.processes import terminate
from tests.support.waiting import wait_until

START = datetime(2026, 3, 2, tzinfo=UTC)  # a Monday
INTERVAL_S = 10.0


# -- the figures every scenario reports ---------------------------------------------------


@dataclass(frozen=True)
class Figures:
    """Samples produced by the simulators, stored in InfluxDB (distinct points), duplicated
    (points beyond what was produced: never), reported lost in transit by the ingest's gap
    reports (net of late arrivals), and dropped by the edge itself (counted there)."""

    scenario: str
    produced: int
    stored: int
    duplicated: int
    reported_lost: int
    edge_dropped: int
    note: str = ""
    # Still in the edge buffers when the run ended (not acknowledged within its drain):
    # never part of "accounted", shown so a shortfall says whether samples were held or gone.
    edge_buffered: int = 0

    @property
    def accounted(self) -> bool:
        """Every sample produced is stored, reported lost in transit, or counted as an edge
        drop: exactly, with nothing left over."""
        return self.stored + self.reported_lost + self.edge_dropped == self.produced

    def line(self) -> str:
        return (
            f"{self.scenario:<44} produced {self.produced:>7}  stored {self.stored:>7}  "
            f"duplicated {self.duplicated}  reported lost {self.reported_lost:>5}  "
            f"edge dropped {self.edge_dropped:>5}  "
            + (f"edge buffered {self.edge_buffered}  " if self.edge_buffered else "")
            + self.note
        )


REPORTED: list[Figures] = []


def net_gap_samples(influx: InfluxClient) -> int:
    """Samples the ingest reported lost in transit, minus those that arrived late."""
    rows = influx.query_rows(
        'SELECT sum("samples") AS s, sum("recovered_samples") AS r FROM ingest_gaps'
    )
    return int((rows[0]["s"] or 0) - (rows[0]["r"] or 0)) if rows else 0


def settle(
    scenario: str, influx: InfluxClient, *runs: FleetRun, timeout: float = 120, note: str = ""
) -> Figures:
    """Wait until every sample the ``runs`` produced is stored, reported lost or dropped at
    the edge (or ``timeout``), then take the figures."""
    produced: dict[str, int] = {}
    for run in runs:
        for m in run.machines:
            produced[m.spec.machine] = produced.get(m.spec.machine, 0) + m.produced
    dropped = sum(run.dropped for run in runs)
    buffered = sum(run.buffered for run in runs)

    def take() -> Figures:
        stored = influx.count("telemetry", "state")
        return Figures(
            scenario,
            sum(produced.values()),
            sum(min(n, produced.get(m, 0)) for m, n in stored.items()),
            sum(max(0, n - produced.get(m, 0)) for m, n in stored.items()),
            net_gap_samples(influx),
            dropped,
            note,
            buffered,
        )

    deadline = time.monotonic() + timeout
    result = take()
    while not result.accounted and time.monotonic() < deadline:
        time.sleep(0.5)
        result = take()
    return result


def wait_for_the_queue_to_drain(
    settings: RunhoursSettings, site: str, influx: InfluxClient, timeout: float = 120
) -> None:
    """Wait until the broker holds nothing for the ingest that was published before now.

    A stand-in machine's status is published, again every 2 s until the ingest stored one
    (a full queue drops the newest message, a marker too). The broker's queue for the
    ingest is first in, first out: once a marker is stored, everything published before it
    was delivered or dropped."""
    url = httpx.URL(settings.mqtt_url.replace("mqtt://", "http://"))
    client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    client.connect(url.host, url.port or 1883)
    client.loop_start()
    topic = f"runhours/v1/{site}/line-a/queue-marker/status"
    query = "SELECT count(online) FROM machine_status WHERE machine = 'queue-marker'"
    deadline = time.monotonic() + timeout
    try:
        while True:
            body = json.dumps({"online": True, "ts": int(time.time() * 1000)})
            client.publish(topic, body, qos=1).wait_for_publish(10)
            if wait_until(lambda: bool(influx.query_rows(query)), 2.0, 0.1):
                return
            assert time.monotonic() < deadline, f"the broker's queue not drained in {timeout} s"
    finally:
        client.disconnect()
        client.loop_stop()


def report(figures: Figures) -> Figures:
    """Record a scenario's figures for the summary printed at the end of the run."""
    REPORTED.append(figures)
    return figures


# -- the ingest as a real process ----------------------------------------------------------


class IngestProcess:
    """``runhours ingest`` as a subprocess, started and restarted with the same session;
    ``start`` returns once it logged its ``ready:`` line (connected and subscribed)."""

    def __init__(self, settings: RunhoursSettings, site: str, log: Path, **options: object) -> None:
        self.log = log
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("RUNHOURS_")}
        self.env.update(
            RUNHOURS_MQTT_URL=settings.mqtt_url,
            RUNHOURS_INFLUX_URL=settings.influx_url,
            RUNHOURS_INFLUX_DB=settings.influx_db,
            RUNHOURS_DATA_DIR=str(settings.data_dir),
            RUNHOURS_INGEST__CLIENT_ID=f"ingest-{site}",
            RUNHOURS_INGEST__SITE=site,
            RUNHOURS_INGEST__RETRY_MAX="2",
            RUNHOURS_INGEST__RECONNECT_MAX_DELAY="2",
            RUNHOURS_INGEST__STATS_INTERVAL="1",
        )
        self.env.update({f"RUNHOURS_INGEST__{k.upper()}": str(v) for k, v in options.items()})
        self.process: subprocess.Popen[bytes] | None = None
        self.starts = 0

    def start(self, timeout: float = 30) -> None:
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "runhours", "ingest"],
                cwd=REPO,
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        self.starts += 1
        deadline = time.monotonic() + timeout
        while self.log.read_text(errors="replace").count("ready: worker") < self.starts:
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"ingest not ready:\n{self.log.read_text()[-3000:]}")
            time.sleep(0.05)

    def kill(self) -> None:
        assert self.process is not None
        self.process.kill()  # SIGKILL: no flush, no ack, no goodbye (the broker sends its will)
        self.process.wait(10)

    def stop(self) -> None:
        if self.process is not None:
            terminate(self.process, 30)


# -- links that fail -----------------------------------------------------------------------


class TcpProxy:
    """A TCP relay to ``127.0.0.1:target``: ``cut()`` drops every connection and refuses new
    ones (a lost uplink), ``restore()`` lets them through again."""

    def __init__(self, target: int) -> None:
        self.target = target
        self.port = free_port()
        self._open = True
        self._writers: set[asyncio.StreamWriter] = set()
        self._loop = asyncio.new_event_loop()
        ready = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(ready,), daemon=True)
        self._thread.start()
        assert ready.wait(5)

    def _run(self, ready: threading.Event) -> None:
        asyncio.set_event_loop(self._loop)
        server = self._loop.run_until_complete(
            asyncio.start_server(self._handle, "127.0.0.1", self.port)
        )
        ready.set()
        self._loop.run_forever()
        # Stopped (close): end the relays and close every socket and the loop itself.
        server.close()
        tasks = asyncio.all_tasks(self._loop)
        for task in tasks:
            task.cancel()
        self._loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))
        self._loop.run_until_complete(server.wait_closed())
        self._loop.close()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if not self._open:
            writer.close()
            return
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target)
        except OSError:
            writer.close()
            return
        self._writers |= {writer, up_writer}

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            with contextlib.suppress(OSError, asyncio.IncompleteReadError):
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            dst.close()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))
        self._writers -= {writer, up_writer}

    def cut(self) -> None:
        def close_all() -> None:
            self._open = False
            for w in list(self._writers):
                w.transport.abort()

        self._loop.call_soon_threadsafe(close_all)

    def restore(self) -> None:
        self._loop.call_soon_threadsafe(setattr, self, "_open", True)

    async def outage(self, after_s: float, lasting_s: float) -> None:
        """A disruption for ``run_paced``: the uplink is lost ``after_s`` seconds into the
        run, for ``lasting_s`` seconds."""
        await asyncio.sleep(after_s)
        self.cut()
        await asyncio.sleep(lasting_s)
        self.restore()

    def close(self) -> None:
        self.cut()
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)


class SlowHttpProxy:
    """An HTTP relay to InfluxDB that holds every request ``delay`` seconds first."""

    def __init__(self, target: str, delay: float) -> None:
        upstream = self._upstream = httpx.Client(base_url=target, timeout=60)
        self.requests = 0

        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _relay(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                time.sleep(delay)
                proxy.requests += 1
                headers = {
                    k: v
                    for k, v in self.headers.items()
                    if k.lower() in ("content-type", "content-encoding", "authorization")
                }
                try:
                    answer = upstream.request(
                        self.command, self.path, content=body, headers=headers
                    )
                except httpx.HTTPError:
                    self.send_error(502)
                    return
                self.send_response(answer.status_code)
                for k, v in answer.headers.items():
                    if k.lower() in ("content-type", "x-influxdb-error"):
                        self.send_header(k, v)
                self.send_header("Content-Length", str(len(answer.content)))
                self.end_headers()
                self.wfile.write(answer.content)

            do_GET = do_POST = _relay

            def log_message(self, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self._upstream.close()


class StockMosquitto(Mosquitto):
    """Mosquitto as a fresh install configures it: no persistence, Mosquitto's default queue
    limits (max_queued_messages 1000 per session), only a listener added."""

    def write_config(self) -> Path:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        path = self.state_dir / "mosquitto.conf"
        path.write_text(
            f"user {getpass.getuser()}\nlistener {self.port} {self.host}\n"
            f"allow_anonymous true\nlog_dest file {self.state_dir}/mosquitto.log\n"
        )
        return path


# -- the fleet -----------------------------------------------------------------------------


def edge_settings(settings: RunhoursSettings, site: str, **options: Any) -> EdgeSettings:
    defaults: dict[str, Any] = {
        "site": site,
        "reconnect_min": 0.2,
        "reconnect_max": 1.0,
        "publish_timeout": 5.0,
        "status_interval": 1.0,
    }
    return EdgeSettings(
        **settings.model_dump(include=set(RunhoursSettings.model_fields)),
        edge=EdgeOptions(**{**defaults, **options}),
    )


def run_paced(
    settings: EdgeSettings,
    specs: list[MachineSpec],
    hours: float,
    wall_seconds: float | None,
    disruption: Callable[[], Awaitable[None]] | None = None,
    drain_timeout: float = 180,
    start: datetime = START,
    ground_truth: Path | None = None,
) -> FleetRun:
    """Simulate ``hours`` paced to last about ``wall_seconds`` (None: as fast as possible),
    with ``disruption`` running alongside; returns once every agent drained. The simulators'
    hours go to ``ground_truth`` when given."""

    async def main() -> FleetRun:
        fleet_run = asyncio.create_task(
            run_fleet(
                settings,
                specs,
                start=start,
                end=start + timedelta(hours=hours),
                speed=None if wall_seconds is None else hours * 3600 / wall_seconds,
                sample_interval_s=INTERVAL_S,
                ground_truth=ground_truth,
                drain_timeout=drain_timeout,
            )
        )
        if disruption is not None:
            await disruption()
        return await fleet_run

    return asyncio.run(main())
