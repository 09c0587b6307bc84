"""The edge agent against a real Mosquitto: batching, store-and-forward, kill -9, overflow.

What arrives is checked with an independent paho-mqtt subscriber; the agent runs in-process
(``asyncio.run``) or as ``python -m runhours edge`` subprocesses for the kill tests.
"""

from __future__ import annotations

import asyncio
import contextlib
import getpass
import json
import logging
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from typer.testing import CliRunner

from common.settings import MqttUrl, SettingsError, load_settings
from edge import (
    AgentStats,
    Broker,
    BufferInUse,
    EdgeAgent,
    EdgeReading,
    SampleBuffer,
)
from edge.buffer import encode_counters
from edge.config import EdgeSettings
from edge.sources import SourceError, csv_source, read_csv, read_mapped_csv
from runhours.cli import app as cli
from runhours.fleet import FleetError, run_fleet
from runhours.services import LocalServices, free_port
from simulators import fleet, read_ground_truth
from tests.support.brokers import running_mosquitto
from tests.support.edge import T0, fast_options, make_readings
from tests.support.paths import REPO
from tests.support.waiting import wait_until
from wire import (
    IngestState,
    MachineRef,
    Sample,
    Status,
    Telemetry,
    WireError,
    decode_status,
    decode_telemetry,
    encode_ingest_state,
    encode_sample,
    encode_telemetry,
    from_epoch_ms,
    ingest_state_topic,
    to_epoch_ms,
)

# -- helpers -------------------------------------------------------------------------------


class Subscriber:
    """An independent paho-mqtt MQTT 5 subscriber collecting everything under a filter.

    ``persistent`` keeps its session (and subscription) across a broker restart, so messages
    published before it reconnects are queued for it. ``ingest_for`` (a site) makes it play
    the ingest's part for the agents: it announces itself online for that site, with a will.
    """

    def __init__(
        self,
        url: str,
        topic: str,
        *,
        persistent: bool = False,
        ca_file: Path | None = None,
        ingest_for: str | None = None,
    ) -> None:
        broker = MqttUrl.parse(url)
        self.messages: list[tuple[str, bytes, bool]] = []
        self._lock = threading.Lock()
        self._subscribed = threading.Event()
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=f"test-sub-{uuid.uuid4().hex[:8]}",
            protocol=mqtt.MQTTv5,
        )
        self.client.on_connect = lambda c, *_: c.subscribe(topic, qos=1)
        self.state_topic = ingest_state_topic(f"test-{uuid.uuid4().hex[:8]}")
        state = IngestState(online=True, ts=datetime.now(UTC), site=ingest_for or "+")

        def subscribed(*_: object) -> None:
            if ingest_for:  # after the subscription, as a real ingest does
                self.client.publish(self.state_topic, encode_ingest_state(state), 1, retain=True)
            self._subscribed.set()

        self.client.on_subscribe = subscribed
        if ingest_for:
            offline = encode_ingest_state(state.model_copy(update={"online": False}))
            self.client.will_set(self.state_topic, offline, qos=1, retain=True)
        self.ingest_for = ingest_for
        self.closed = False
        self.client.on_message = self._on_message
        self.client.reconnect_delay_set(1, 1)
        if broker.username:
            self.client.username_pw_set(broker.username, broker.password)
        if broker.tls:
            self.client.tls_set(ca_certs=str(ca_file))
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = 3600 if persistent else 0
        self.client.connect(broker.host, broker.port, clean_start=not persistent, properties=props)
        self.client.loop_start()
        assert self._subscribed.wait(10), "test subscriber could not subscribe"

    def _on_message(self, _c: object, _u: object, message: mqtt.MQTTMessage) -> None:
        with self._lock:
            self.messages.append((message.topic, bytes(message.payload), bool(message.retain)))

    def telemetry(self) -> list[tuple[str, bytes, Telemetry]]:
        with self._lock:
            items = list(self.messages)
        return [(t, p, decode_telemetry(t, p)[1]) for t, p, _ in items if t.endswith("/telemetry")]

    def statuses(self) -> list[Status]:
        with self._lock:
            items = list(self.messages)
        return [decode_status(p) for t, p, _ in items if t.endswith("/status")]

    def sample_ts(self) -> set[int]:
        return {s.ts_ms for _, _, m in self.telemetry() for s in m.samples}

    def per_machine(self) -> dict[str, int]:
        """Distinct samples received per machine."""
        seen: dict[str, set[int]] = {}
        for topic, _, message in self.telemetry():
            seen.setdefault(topic.split("/")[4], set()).update(s.ts_ms for s in message.samples)
        return {machine: len(ts) for machine, ts in seen.items()}

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        if self.ingest_for:  # clear the retained state: the broker outlives this test
            self.client.publish(self.state_topic, b"", 1, retain=True).wait_for_publish(5)
        self.client.disconnect()  # first: the network thread then ends at once
        self.client.loop_stop()


@pytest.fixture
def subscribe() -> Iterator[Callable[..., Subscriber]]:
    made: list[Subscriber] = []

    def make(url: str, topic: str, **kwargs: Any) -> Subscriber:
        made.append(Subscriber(url, topic, **kwargs))
        return made[-1]

    yield make
    for sub in made:
        sub.close()


def retained_status(url: str, ref: MachineRef) -> Status:
    """What a newcomer sees on the machine's status topic (the retained message)."""
    sub = Subscriber(url, f"runhours/v1/{ref.site}/{ref.line}/{ref.machine}/status")
    try:
        assert wait_until(lambda: bool(sub.messages), 5), "no retained status"
        return sub.statuses()[-1]
    finally:
        sub.close()


def cli_env() -> dict[str, str]:
    """The environment for agent subprocesses: the test's config file alone decides."""
    return {k: v for k, v in os.environ.items() if not k.startswith("RUNHOURS_")}


def write_config(path: Path, mqtt_url: str, data_dir: Path, edge: str) -> Path:
    path.write_text(f'mqtt_url = "{mqtt_url}"\ndata_dir = "{data_dir}"\n\n[edge]\n{edge}')
    return path


def start_agent(config: Path, log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "runhours", "edge", "--config", str(config), "-v"],
            cwd=REPO,
            env=cli_env(),
            stdout=out,
            stderr=subprocess.STDOUT,
        )


# -- batching and the wire format ----------------------------------------------------------


def test_batches_carry_contiguous_seq_and_the_exact_samples(
    services: LocalServices, test_id: str, tmp_path: Path, subscribe: Callable[..., Subscriber]
) -> None:
    ref = MachineRef(test_id, "line-a", "cnc-01")
    sub = subscribe(services.mqtt_url, f"runhours/v1/{test_id}/#", ingest_for=test_id)
    readings = make_readings(0, 1200)

    async def scenario() -> None:
        with SampleBuffer(tmp_path / "buffer.sqlite3") as buffer:
            agent = EdgeAgent(ref, buffer, Broker.from_url(services.mqtt_url), fast_options())
            run = asyncio.create_task(agent.run())
            assert await agent.wait_connected(10)
            assert agent.submit(readings) == 1200
            assert await agent.drain(10)
            agent.submit(make_readings(1200, 3))  # a partial batch: out after publish_interval
            assert await agent.drain(5)
            agent.stop()
            await run
            stats = agent.stats
            assert (stats.submitted, stats.published, stats.messages, stats.buffered) == (
                1203,
                1203,
                4,
                0,
            )

    asyncio.run(scenario())
    assert wait_until(lambda: len(sub.telemetry()) == 4, 5)
    messages = sub.telemetry()
    assert [m.seq for _, _, m in messages] == [0, 1, 2, 3]
    assert [len(m.samples) for _, _, m in messages] == [500, 500, 200, 3]
    received = [s for _, _, m in messages for s in m.samples]
    assert received == [r.sample for r in make_readings(0, 1203)]
    # Each message carries the hour meter of its last sample; none is historical.
    assert [m.counters for _, _, m in messages] == [
        {"run_seconds_total": 3600.0 + last} for last in (499, 999, 1199, 1202)
    ]
    assert not any(m.historical for _, _, m in messages)
    for topic, payload, message in messages:
        assert topic == f"runhours/v1/{test_id}/line-a/cnc-01/telemetry"
        assert payload == encode_telemetry(message)  # byte-identical to the contract's encoder
    statuses = sub.statuses()
    assert statuses[0].online and statuses[0].buffered == 0
    assert not statuses[-1].online and statuses[-1].buffered == 0  # the graceful goodbye
    assert retained_status(services.mqtt_url, ref).online is False


# -- store-and-forward ---------------------------------------------------------------------


def test_broker_outage_is_ridden_out_and_the_backlog_arrives_historical(
    own_services: LocalServices, test_id: str, tmp_path: Path, subscribe: Callable[..., Subscriber]
) -> None:
    url = own_services.mqtt_url
    ref = MachineRef(test_id, "line-a", "pump-01")
    sub = subscribe(
        url, f"runhours/v1/{test_id}/+/+/telemetry", persistent=True, ingest_for=test_id
    )
    offline: set[int] = set()  # ts of samples submitted while the agent had no connection
    produced: list[int] = []

    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        with SampleBuffer(tmp_path / "buffer.sqlite3") as buffer:
            agent = EdgeAgent(ref, buffer, Broker.from_url(url), fast_options())
            run = asyncio.create_task(agent.run())
            assert await agent.wait_connected(10)

            async def produce(seconds: float) -> None:
                end = loop.time() + seconds
                while loop.time() < end:
                    batch = make_readings(len(produced), 5)
                    if not agent.connected:
                        offline.update(r.sample.ts_ms for r in batch)
                    produced.extend(r.sample.ts_ms for r in batch)
                    agent.submit(batch)
                    await asyncio.sleep(0.1)

            await produce(1.0)
            await asyncio.to_thread(own_services.mosquitto.stop)
            await produce(5.0)
            assert agent.buffer.count > 0 and not agent.connected
            await asyncio.to_thread(own_services.mosquitto.start)
            await produce(1.5)
            assert await agent.drain(20), f"{agent.buffer.count} samples still buffered"
            agent.stop()
            await run
            assert agent.stats.connects >= 2
            assert agent.stats.published >= len(produced)

    asyncio.run(scenario())
    assert len(offline) >= 150  # ~5 s of samples were taken during the outage
    assert wait_until(lambda: sub.sample_ts() >= set(produced), 15), (
        f"missing {len(set(produced) - sub.sample_ts())} of {len(produced)} samples"
    )
    historical = {s.ts_ms for _, _, m in sub.telemetry() if m.historical for s in m.samples}
    assert offline <= historical
    live = {s.ts_ms for _, _, m in sub.telemetry() if not m.historical for s in m.samples}
    assert live, "samples taken while connected go out live"


def test_agent_killed_with_sigkill_replays_its_buffer_after_restart(
    services: LocalServices, test_id: str, tmp_path: Path, subscribe: Callable[..., Subscriber]
) -> None:
    """`runhours edge` with a paced CSV replay, kill -9 mid-run, restart: everything arrives."""
    ref = MachineRef(test_id, "line-a", "cnc-07")
    rows = make_readings(0, 300)  # 1 s apart, replayed at 50x: ~6 s
    csv = tmp_path / "machine.csv"
    csv.write_text(
        "ts,state,vibration_mm_s,bearing_temp_c,run_seconds_total\n"
        + "".join(
            f"{r.sample.ts_ms},{r.sample.state},{r.sample.values['vibration_mm_s']},"
            f"{r.sample.values['bearing_temp_c']},{r.counters['run_seconds_total']}\n"
            for r in rows
        )
    )
    config = write_config(
        tmp_path / "edge.toml",
        services.mqtt_url,
        tmp_path / "var",
        f'site = "{test_id}"\nline = "line-a"\nmachine = "cnc-07"\npublish_interval = 2.0\n'
        f'[edge.source]\ntype = "csv"\npath = "{csv}"\nspeed = 50\n',
    )
    buffer_file = tmp_path / "var" / "edge" / f"{test_id}.line-a.cnc-07.sqlite3"
    sub = subscribe(services.mqtt_url, f"runhours/v1/{test_id}/#", ingest_for=test_id)
    log = tmp_path / "agent.log"

    agent = start_agent(config, log)
    try:
        assert wait_until(lambda: len(sub.telemetry()) >= 1, 20), log.read_text()
        time.sleep(0.5)  # publish_interval 2 s: the last ~25 samples wait in the buffer
        agent.send_signal(signal.SIGKILL)
        assert agent.wait(10) == -signal.SIGKILL
    finally:
        agent.kill()
    # The broker announces the death with the will: retained, offline, no buffer figures.
    assert wait_until(lambda: any(not s.online for s in sub.statuses()), 5)
    will = retained_status(services.mqtt_url, ref)
    assert will.online is False and will.buffered is None
    before_kill = sub.telemetry()
    with contextlib.closing(sqlite3.connect(buffer_file)) as db:
        bodies = [json.loads(b) for (b,) in db.execute("SELECT body FROM samples")]
    stranded = {body["ts"] for body in bodies}
    assert stranded, "the kill should leave samples in the buffer"
    assert not stranded & {s.ts_ms for _, _, m in before_kill for s in m.samples}

    agent = start_agent(config, log)
    try:
        assert wait_until(lambda: sub.sample_ts() >= {r.sample.ts_ms for r in rows}, 30), (
            log.read_text()
        )
        agent.send_signal(signal.SIGTERM)
        assert agent.wait(15) == 0, log.read_text()
    finally:
        agent.kill()
    received = {s.ts_ms: s for _, _, m in sub.telemetry() for s in m.samples}
    assert [received[r.sample.ts_ms] for r in rows] == [r.sample for r in rows]  # exact values
    after = sub.telemetry()[len(before_kill) :]
    historical = {s.ts_ms for _, _, m in after if m.historical for s in m.samples}
    assert stranded <= historical
    assert min(m.seq for _, _, m in after) > max(m.seq for _, _, m in before_kill)
    status = retained_status(services.mqtt_url, ref)
    assert status.online is False and status.buffered == 0  # SIGTERM: a clean goodbye


def test_will_announces_offline_when_a_simulating_agent_is_killed(
    services: LocalServices, test_id: str, tmp_path: Path, subscribe: Callable[..., Subscriber]
) -> None:
    ref = MachineRef(test_id, "line-b", "comp-01")
    config = write_config(
        tmp_path / "edge.toml",
        services.mqtt_url,
        tmp_path / "var",
        f'site = "{test_id}"\nline = "line-b"\nmachine = "comp-01"\npublish_interval = 0.2\n'
        '[edge.source]\ntype = "simulator"\nkind = "compressor"\nspeed = 600\n',
    )
    sub = subscribe(services.mqtt_url, f"runhours/v1/{test_id}/#", ingest_for=test_id)
    log = tmp_path / "agent.log"
    agent = start_agent(config, log)
    try:
        assert wait_until(lambda: len(sub.telemetry()) >= 2, 20), log.read_text()
        assert sub.statuses()[0].online
        agent.send_signal(signal.SIGKILL)
        agent.wait(10)
    finally:
        agent.kill()
    assert wait_until(lambda: any(not s.online for s in sub.statuses()), 5)
    assert retained_status(services.mqtt_url, ref).online is False
    samples = [s for _, _, m in sub.telemetry() for s in m.samples]
    assert {"discharge_pressure_bar", "vibration_mm_s"} <= set(samples[-1].values)
    assert all("run_seconds_total" in m.counters for _, _, m in sub.telemetry())


# -- credentials and TLS --------------------------------------------------------------------


def test_tls_and_credentials_from_the_settings(
    tls_broker: tuple[int, Path],
    test_id: str,
    tmp_path: Path,
    subscribe: Callable[..., Subscriber],
) -> None:
    port, ca = tls_broker
    url = f"mqtts://edge:s3cret@127.0.0.1:{port}"
    settings = EdgeSettings(mqtt_url=url, mqtt_ca_file=ca, data_dir=tmp_path / "var")
    sub = subscribe(url, f"runhours/v1/{test_id}/+/+/telemetry", ca_file=ca, ingest_for=test_id)
    ref = MachineRef(test_id, "line-a", "pump-03")

    async def connect(settings: EdgeSettings, readings: int = 0, wait: float = 1.0) -> EdgeAgent:
        with SampleBuffer(tmp_path / f"{uuid.uuid4().hex}.sqlite3") as buffer:
            agent = EdgeAgent(ref, buffer, settings.broker, fast_options())
            run = asyncio.create_task(agent.run())
            if await agent.wait_connected(wait):
                agent.submit(make_readings(0, readings))
                assert await agent.drain(5)
            agent.stop()
            await run
            return agent

    agent = asyncio.run(connect(settings, readings=20, wait=5))
    assert agent.stats.published == 20
    assert wait_until(lambda: len(sub.sample_ts()) == 20, 5)

    wrong = settings.model_copy(update={"mqtt_url": url.replace("s3cret", "guess")})
    agent = asyncio.run(connect(wrong))
    assert agent.stats.connects == 0 and "authorized" in (agent.last_error or "").lower()

    untrusted = settings.model_copy(update={"mqtt_ca_file": None})  # system CAs: not ours
    agent = asyncio.run(connect(untrusted))
    assert agent.stats.connects == 0 and "certificate" in (agent.last_error or "").lower()


# -- the buffer's bounds -------------------------------------------------------------------


def test_overflow_drops_the_oldest_counts_them_and_the_newest_arrive(
    services: LocalServices, test_id: str, tmp_path: Path, subscribe: Callable[..., Subscriber]
) -> None:
    ref = MachineRef(test_id, "line-a", "cnc-02")
    path = tmp_path / "buffer.sqlite3"
    readings = make_readings(0, 1000)
    max_bytes = 30_000  # ~250 samples of ~120 bytes (wire size, counters included)
    sizes = [
        len(encode_sample(r.sample)) + len(encode_counters(r.counters) or b"") for r in readings
    ]
    # Dropping the oldest until the rest fits keeps the longest suffix within max_bytes.
    expected = next(n for n in range(1000, 0, -1) if sum(sizes[-n:]) <= max_bytes)

    async def offline_phase() -> None:
        # No broker listens on this port: everything stays in the (too small) buffer.
        dead = Broker.from_url(f"mqtt://127.0.0.1:{free_port()}")
        with SampleBuffer(path, max_bytes=max_bytes) as buffer:
            agent = EdgeAgent(ref, buffer, dead, fast_options())
            run = asyncio.create_task(agent.run())
            for i in range(0, 1000, 100):
                agent.submit(readings[i : i + 100])
                await asyncio.sleep(0)
            assert not await agent.wait_connected(0.3)
            agent.stop()
            await run
            assert buffer.nbytes <= max_bytes
            assert agent.stats.dropped == buffer.dropped_total == 1000 - buffer.count

    asyncio.run(offline_phase())
    kept = SampleBuffer(path, max_bytes=max_bytes)
    count, dropped_total = kept.count, kept.dropped_total  # persisted across the reopen
    kept.close()
    assert (count, dropped_total) == (expected, 1000 - expected)

    sub = subscribe(services.mqtt_url, f"runhours/v1/{test_id}/#", ingest_for=test_id)

    async def online_phase() -> None:
        with SampleBuffer(path, max_bytes=max_bytes) as buffer:
            agent = EdgeAgent(ref, buffer, Broker.from_url(services.mqtt_url), fast_options())
            run = asyncio.create_task(agent.run())
            assert await agent.drain(10)
            agent.stop()
            await run

    asyncio.run(online_phase())
    newest = [r.sample for r in readings[1000 - count :]]
    assert wait_until(lambda: len(sub.sample_ts()) == count, 5)
    messages = sub.telemetry()
    assert [s for _, _, m in messages for s in m.samples] == newest  # oldest dropped, in order
    assert all(m.historical for _, _, m in messages)
    assert sub.statuses()[0].dropped_total == 1000 - count


def test_buffer_age_bound_keeps_in_flight_samples_and_persists_seq(tmp_path: Path) -> None:
    now = [1000.0]
    path = tmp_path / "buffer.sqlite3"
    with SampleBuffer(path, max_age_s=60, clock=lambda: now[0]) as buffer:
        buffer.append(make_readings(0, 10))
        batch = buffer.take(4)  # samples 0-3 in flight
        assert batch is not None and len(batch) == 4
        now[0] += 61
        buffer.append(make_readings(10, 5))  # expires 4-9, not the in-flight 0-3
        assert (buffer.count, buffer.dropped, buffer.dropped_total) == (9, 6, 6)
        assert buffer.ack(batch) == 4
        rest = buffer.take(100)
        assert rest is not None
        assert [json.loads(b)["ts"] for b in rest.bodies] == [T0 + i * 1000 for i in range(10, 15)]
        with pytest.raises(WireError, match="counters: name 'Hours'"):
            buffer.append([EdgeReading(make_readings(15, 1)[0].sample, {"Hours": 1.0})])
        assert buffer.count == 5  # a bad reading is rejected before anything is written
        # seq +1 per message; offset = samples in the messages before (dropped ones never count)
        assert (batch.seq, batch.offset, rest.seq, rest.offset, buffer.seq) == (0, 0, 1, 4, 2)
        assert buffer.delivered == (1, 4)  # message 0 acknowledged, message 1 in flight
        assert buffer.last_ts_ms == T0 + 14_000
        with pytest.raises(BufferInUse, match="in use by another process"):
            SampleBuffer(path)
    with SampleBuffer(path, max_age_s=60, clock=lambda: now[0]) as reopened:
        assert reopened.seq == 2  # monotonic across restarts
        assert reopened.count == 5 and reopened.dropped_total == 6
        assert reopened.rewind() == 15  # the watermark: the newest row id ever appended
        again = reopened.take(100)  # the unacknowledged message, resent exactly as it was
        assert again is not None and (again.seq, again.offset) == (1, 4)
        assert again.bodies == rest.bodies
        reopened.ack(again)
        assert reopened.take(100) is None and reopened.delivered == (2, 9)


# -- configuration and sources -------------------------------------------------------------


def test_bad_edge_config_names_the_field(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text(
        '[edge]\nmachine = "cnc 01"\nmax_batch = 0\npublish_intervall = 2\n'
        '[edge.buffer]\nmax_age = "a week"\n[edge.source]\ntype = "csv"\nspeed = "fast"\n'
    )
    with pytest.raises(SettingsError) as error:
        load_settings(EdgeSettings, bad)
    message = str(error.value)
    for expected in (
        "edge.machine: String should match pattern",
        "edge.max_batch: Input should be greater than or equal to 1",
        "edge.publish_intervall: unknown field",
        "edge.buffer.max_age: 'a week' is not a duration",
        "edge.source.csv.path: Field required",
        "edge.source.csv.speed: 'fast' is not a speed",
    ):
        assert expected in message
    result = CliRunner().invoke(cli, ["edge", "--config", str(bad)], env={"COLUMNS": "200"})
    assert result.exit_code == 2
    assert "edge.max_batch" in result.output

    kind = tmp_path / "kind.toml"
    kind.write_text('[edge.source]\nkind = "lathe"\n')
    result = CliRunner().invoke(cli, ["edge", "--config", str(kind)], env={"COLUMNS": "200"})
    assert result.exit_code == 2
    assert "edge.source.kind: unknown machine kind 'lathe'" in result.output


def test_csv_source_parses_documented_columns_and_resumes(tmp_path: Path) -> None:
    csv = tmp_path / "m.csv"
    csv.write_text(
        "ts,state,vibration_mm_s,run_seconds_total,bearing_temp_c\n"
        "2026-03-02T08:00:00+01:00,running,1.5,3600,41\n"
        "1772434810000,,0.4,,\n"
        "2026-03-02T07:00:20Z,idle,,3610,40.5\n"
    )
    rows = list(read_csv(csv))
    assert [r.sample.ts_ms for r in rows] == [1772434800000, 1772434810000, 1772434820000]
    assert rows[0] == EdgeReading(
        Sample(
            ts=from_epoch_ms(1772434800000),
            state="running",
            values={"vibration_mm_s": 1.5, "bearing_temp_c": 41},
        ),
        {"run_seconds_total": 3600.0},
    )
    assert rows[1].sample.state is None and rows[1].counters == {}
    assert rows[2].sample.values == {"bearing_temp_c": 40.5}
    assert [r.sample.ts_ms for r in read_csv(csv, after_ts_ms=1772434810000)] == [1772434820000]

    async def paced() -> tuple[int, float]:
        t0 = time.monotonic()
        chunks = [chunk async for chunk in csv_source(csv, speed=100)]  # 20 s of data / 100
        return len(chunks), time.monotonic() - t0

    chunks, elapsed = asyncio.run(paced())
    assert chunks == 3 and 0.18 < elapsed < 1.0

    bad = tmp_path / "bad.csv"
    bad.write_text("ts,state,vibration_mm_s\n2026-03-02T08:00:00,running,1\n")
    with pytest.raises(SourceError, match=r"bad.csv:2: column ts: .*naive timestamp"):
        list(read_csv(bad))
    bad.write_text("ts,state,vibration_mm_s\n1772434800000,walking,1\n")
    with pytest.raises(SourceError, match=r"bad.csv:2: column state: 'walking'"):
        list(read_csv(bad))
    bad.write_text("ts,state,Vibration\n")
    with pytest.raises(SourceError, match=r"bad.csv:1: column 'Vibration' is not a value name"):
        list(read_csv(bad))


# -- the fleet -----------------------------------------------------------------------------


def test_fleet_publishes_every_simulated_sample_once_per_machine(
    services: LocalServices, test_id: str, tmp_path: Path, subscribe: Callable[..., Subscriber]
) -> None:
    settings = EdgeSettings(mqtt_url=services.mqtt_url, data_dir=tmp_path / "var")
    start = datetime(2026, 3, 2, tzinfo=UTC)
    specs = fleet(4, seed=7, start=start, site=test_id)
    sub = subscribe(services.mqtt_url, f"runhours/v1/{test_id}/+/+/telemetry", ingest_for=test_id)
    truth = tmp_path / "truth.json"

    result = asyncio.run(
        run_fleet(
            settings,
            specs,
            start=start,
            end=start + timedelta(hours=12),
            speed=None,
            ground_truth=truth,
            high_water=1000,
        )
    )
    assert not result.interrupted and result.buffered == 0 and result.dropped == 0
    for machine in result.machines:
        # one sample per 10 s, plus one at every state change
        assert machine.produced == machine.published >= 12 * 360
    expected = {m.spec.machine: m.produced for m in result.machines}
    assert wait_until(lambda: sub.per_machine() == expected, 10), sub.per_machine()
    assert [t.machine for t in read_ground_truth(truth)] == [s.machine for s in specs]


def test_simulate_command_runs_a_small_fleet(
    services: LocalServices, test_id: str, tmp_path: Path, subscribe: Callable[..., Subscriber]
) -> None:
    sub = subscribe(services.mqtt_url, f"runhours/v1/{test_id}/+/+/telemetry", ingest_for=test_id)
    truth = tmp_path / "truth.json"
    env = {"RUNHOURS_MQTT_URL": services.mqtt_url, "RUNHOURS_DATA_DIR": str(tmp_path / "var")}
    args = ["simulate", "--machines", "3", "--days", "0.25", "--seed", "5", "--site", test_id]
    args += ["--start", "2026-03-03", "--ground-truth", str(truth), "--no-progress"]
    result = CliRunner().invoke(cli, args, env={**env, "COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "cnc-01" in result.output and "comp-01" in result.output
    published = int(result.output.split(" samples published")[0].split()[-1].replace(",", ""))
    assert published >= 3 * 6 * 360
    assert wait_until(lambda: sum(sub.per_machine().values()) == published, 10)
    assert len(read_ground_truth(truth)) == 3

    result = CliRunner().invoke(cli, [*args, "--speed", "fast"], env=env)
    assert result.exit_code == 2 and "--speed" in result.output


def test_fleet_says_clearly_when_the_broker_is_unreachable(tmp_path: Path) -> None:
    dead = f"mqtt://127.0.0.1:{free_port()}"
    settings = EdgeSettings(mqtt_url=dead, data_dir=tmp_path / "var")
    start = datetime(2026, 3, 2, tzinfo=UTC)
    run = run_fleet(
        settings,
        fleet(2, start=start),
        start=start,
        end=start + timedelta(hours=1),
        speed=None,
        connect_timeout=0.5,
    )
    with pytest.raises(
        FleetError, match=r"cannot reach the MQTT broker at mqtt://127\.0\.0\.1.*refused"
    ):
        asyncio.run(run)


# -- a broker that refuses a publish ----------------------------------------------------------


@pytest.fixture
def acl_broker(tmp_path: Path) -> Iterator[tuple[str, Path, subprocess.Popen[bytes]]]:
    """A private Mosquitto whose ACL file decides what anonymous clients may publish.

    Yields its URL, the ACL file (rewrite it, then send SIGHUP to reload) and the process.
    """
    d = tmp_path / "acl"
    d.mkdir()
    acl = d / "acl"
    acl.write_text(  # no telemetry
        "topic read #\ntopic write runhours/v1/+/+/+/status\n"
        "topic write runhours/v1/ingest/+/state\n"
    )
    port = free_port()
    (d / "mosquitto.conf").write_text(
        f"user {getpass.getuser()}\nlistener {port} 127.0.0.1\nallow_anonymous true\n"
        f"acl_file {acl}\nlog_dest file {d}/mosquitto.log\n"
    )
    with running_mosquitto(d / "mosquitto.conf", port) as process:
        yield f"mqtt://127.0.0.1:{port}", acl, process


def test_a_publish_the_broker_refuses_stays_buffered_until_it_is_accepted(
    acl_broker: tuple[str, Path, subprocess.Popen[bytes]],
    test_id: str,
    tmp_path: Path,
    subscribe: Callable[..., Subscriber],
) -> None:
    """An MQTT 5 PUBACK with a failure reason code (here 0x87 Not authorized, from the ACL;
    also 0x95 Packet too large, 0x97 Quota exceeded) is not an acknowledgement: the samples
    stay in the buffer, the error says why, and they arrive once the broker accepts them."""
    url, acl, broker = acl_broker
    ref = MachineRef(test_id, "line-a", "cnc-07")
    sub = subscribe(url, f"runhours/v1/{test_id}/+/+/telemetry", ingest_for=test_id)

    async def scenario() -> tuple[int, str | None, bool, AgentStats]:
        with SampleBuffer(tmp_path / "buffer.sqlite3") as buffer:
            agent = EdgeAgent(ref, buffer, Broker.from_url(url), fast_options())
            run = asyncio.create_task(agent.run())
            assert await agent.wait_connected(5)
            agent.submit(make_readings(0, 30))
            refused_drained = await agent.drain(1.5)
            kept, error = buffer.count, agent.last_error
            acl.write_text("topic read #\ntopic write runhours/v1/#\n")
            broker.send_signal(signal.SIGHUP)  # Mosquitto reloads its ACL file
            drained = await agent.drain(10)
            agent.stop()
            await run
            assert not refused_drained
            return kept, error, drained, agent.stats

    kept, error, drained, stats = asyncio.run(scenario())
    assert kept == 30, "refused samples must stay in the buffer"
    assert error is not None and "not authorized" in error.lower(), error
    assert drained and stats.published == 30 and stats.buffered == 0
    assert wait_until(lambda: len(sub.sample_ts()) == 30, 5)
    assert sub.sample_ts() == {T0 + i * 1000 for i in range(30)}


# -- delivered means delivered: no subscriber, no ingest ---------------------------------------


async def _until(condition: Callable[[], bool], timeout: float) -> None:
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.02)


def test_a_publish_nobody_subscribes_to_stays_buffered_until_someone_does(
    own_services: LocalServices,
    test_id: str,
    tmp_path: Path,
    subscribe: Callable[..., Subscriber],
) -> None:
    """Mosquitto answers a QoS 1 publish nobody subscribes to with PUBACK 0x10 and discards
    it: that is not a delivery. The samples stay buffered (counted), and arrive once a
    subscriber exists, under the same seq. (A private broker: on the shared one, another
    test's persistent session subscribed to every site would take the message.)"""
    services = own_services
    ref = MachineRef(test_id, "line-a", "cnc-08")
    filter_ = f"runhours/v1/{test_id}/+/+/telemetry"

    async def scenario() -> tuple[int, int, AgentStats, Subscriber]:
        with SampleBuffer(tmp_path / "buffer.sqlite3") as buffer:
            options = fast_options(require_ingest=False)
            agent = EdgeAgent(ref, buffer, Broker.from_url(services.mqtt_url), options)
            run = asyncio.create_task(agent.run())
            assert await agent.wait_connected(5)
            agent.submit(make_readings(0, 25))
            await _until(lambda: agent.stats.no_subscriber >= 2, 10)  # refused, resent, refused
            kept = buffer.count
            sub = await asyncio.to_thread(subscribe, services.mqtt_url, filter_)
            assert await agent.drain(10)
            agent.stop()
            await run
            return kept, buffer.count, agent.stats, sub

    kept, left, stats, sub = asyncio.run(scenario())
    assert (kept, left) == (25, 0)
    assert stats.no_subscriber >= 2 and stats.published == 25 and stats.messages == 1
    assert wait_until(lambda: len(sub.sample_ts()) == 25, 5)
    assert [m.seq for _, _, m in sub.telemetry()] == [0]  # the resend kept its seq
    assert [m.offset for _, _, m in sub.telemetry()] == [0]


def test_telemetry_waits_while_no_ingest_is_online(
    own_services: LocalServices,
    test_id: str,
    tmp_path: Path,
    subscribe: Callable[..., Subscriber],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """With require_ingest (the default) the agent publishes only while an ingest serving its
    site announces itself online: before one exists, and again after it went away, the
    samples wait in the buffer; each hold is logged once. (A private broker: no other
    test's ingest can be online for every site.)"""
    services = own_services
    ref = MachineRef(test_id, "line-a", "cnc-09")
    watcher = subscribe(services.mqtt_url, f"runhours/v1/{test_id}/+/+/telemetry")  # no ingest
    holds = lambda: caplog.text.count("holding telemetry")  # noqa: E731

    async def scenario() -> list[tuple[int, int]]:
        seen = []
        with SampleBuffer(tmp_path / "buffer.sqlite3") as buffer:
            agent = EdgeAgent(ref, buffer, Broker.from_url(services.mqtt_url), fast_options())
            run = asyncio.create_task(agent.run())
            assert await agent.wait_connected(5)
            agent.submit(make_readings(0, 30))
            await _until(lambda: holds() == 1, 10)
            seen.append((agent.stats.messages, buffer.count))
            ingest = await asyncio.to_thread(
                subscribe, services.mqtt_url, "runhours/v1/ingest/+/state", ingest_for=test_id
            )
            assert await agent.drain(10)
            seen.append((agent.stats.messages, buffer.count))
            await asyncio.to_thread(ingest.close)  # clears its state: no ingest again
            await _until(lambda: not agent.ingest_online, 5)
            agent.submit(make_readings(30, 10))
            await _until(lambda: holds() == 2, 10)
            seen.append((agent.stats.messages, buffer.count))
            agent.stop()
            await run
        return seen

    with caplog.at_level(logging.INFO, logger="runhours.edge.agent"):
        seen = asyncio.run(scenario())
    assert seen == [(0, 30), (1, 0), (1, 10)]
    assert caplog.text.count("an ingest is online again") == 1
    assert wait_until(lambda: len(watcher.sample_ts()) == 30, 5)


def test_a_recorded_machine_csv_maps_its_own_columns(tmp_path: Path) -> None:
    """A data logger's export (the U-Mich CNC data set's columns, 100 ms rows, no time
    column) through examples/umich-cnc-edge.toml's mapping."""
    settings = load_settings(EdgeSettings, REPO / "examples" / "umich-cnc-edge.toml")
    source = settings.edge.source
    assert source.type == "csv" and source.columns is not None
    header = [
        "X1_ActualPosition", "X1_ActualVelocity", "Y1_ActualVelocity", "Z1_ActualVelocity",
        "S1_ActualVelocity", "S1_CurrentFeedback", "S1_OutputPower", "M1_CURRENT_FEEDRATE",
        "Machining_Process",
    ]  # fmt: skip
    rows = [
        ["198", "0", "0", "0", "0.2", "0.1", "0.0", "50", "Starting"],
        ["150.5", "3.5", "-1", "0", "53.1", "12.5", "0.021", "6", "Layer 1 Up"],
        ["151.0", "3.5", "-1", "0", "-53.4", "12.7", "", "6", "Layer 1 Up"],
    ]
    data = tmp_path / "experiment_01.csv"
    data.write_text("\n".join(",".join(r) for r in [header, *rows]) + "\n", encoding="utf-8")
    readings = list(read_mapped_csv(data, source.columns))
    start = to_epoch_ms(datetime(2018, 4, 2, 9, tzinfo=UTC))
    assert [r.sample.ts_ms for r in readings] == [start, start + 100, start + 200]
    assert [r.sample.state for r in readings] == ["idle", "running", "running"]
    assert readings[1].sample.values == {
        "spindle_velocity_mm_s": 53.1, "spindle_current_a": 12.5, "spindle_power_kw": 0.021,
        "x_velocity_mm_s": 3.5, "y_velocity_mm_s": -1.0, "z_velocity_mm_s": 0.0,
        "feed_rate_mm_s": 6.0,
    }  # fmt: skip
    assert "spindle_power_kw" not in readings[2].sample.values  # an empty cell: no value
    assert list(read_mapped_csv(data, source.columns, after_ts_ms=start + 100)) == readings[2:]
    data.write_text(",".join(header) + "\n" + ",".join(rows[1]).replace("12.5", "n/a") + "\n")
    with pytest.raises(SourceError, match=r"experiment_01.csv:2: column S1_CurrentFeedback: 'n/a'"):
        list(read_mapped_csv(data, source.columns))
    data.write_text("S1_ActualVelocity\n1\n")
    with pytest.raises(SourceError, match=r":1: no column 'M1_CURRENT_FEEDRATE'"):
        list(read_mapped_csv(data, source.columns))
