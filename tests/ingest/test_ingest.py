"""ingest/: MQTT → InfluxDB at least once, no duplicates, dead letters, backpressure.

Every test publishes with plain paho clients (or the real ``mosquitto_pub``) to the real
Mosquitto and checks what the real InfluxDB stored. Each test uses its own site id and
database; tests that stop a service use a private pair (``own_services``).
"""

from __future__ import annotations

import base64
import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from typer.testing import CliRunner

from common.settings import RunhoursSettings, SettingsError, load_settings
from ingest import (
    IngestService,
    IngestSettings,
    deadletter_payload,
    decode_message,
    status_point,
    telemetry_points,
    touched_markers,
)
from ingest.points import gap_point, sequence_point
from ingest.sequence import Gap
from runhours.cli import app as cli
from runhours.services import LocalServices, free_port
from store import InfluxClient, encode_points
from store.schema import ingest_state_database
from tests.support.paths import REPO
from tests.support.waiting import wait_for
from wire import (
    IngestState,
    MachineRef,
    Status,
    decode_ingest_state,
    decode_telemetry,
    ingest_state_topic,
    status_subscription,
)
from wire import telemetry_subscription as telemetry_filter

T0 = 1_789_999_200_000  # an exact UTC hour (2026-09-21T14:00:00Z)
HOUR = 3_600_000
INGEST_CLI = "from runhours.commands.ingest import app; app(prog_name='runhours ingest')"


# -- helpers ------------------------------------------------------------------------


def ingest_settings(base: RunhoursSettings, **options: Any) -> IngestSettings:
    """The test's connection settings plus an [ingest] section tuned for fast tests."""
    defaults: dict[str, Any] = {
        "client_id": f"ingest-{base.influx_db}",
        "site": base.influx_db,  # test_id: unique per test, valid as a site id
        "batch_interval": 0.05,
        "retry_initial": 0.05,
        "retry_max": 0.5,
        "reconnect_max_delay": 1,
        "stats_interval": 0,
        "shutdown_timeout": 5,
    }
    return IngestSettings.from_base(base, **{**defaults, **options})


def telemetry(machine: str, seq: int, start_ms: int, n: int = 5, **extra: Any) -> bytes:
    body: dict[str, Any] = {
        "machine": machine,
        "seq": seq,
        "samples": [
            {"ts": start_ms + i * 100, "state": "running", "values": {"load_pct": seq + i / 10}}
            for i in range(n)
        ],
    }
    body.update(extra)
    return json.dumps(body).encode()


def topic(site: str, machine: str, line: str = "l1", leaf: str = "telemetry") -> str:
    return f"runhours/v1/{site}/{line}/{machine}/{leaf}"


class Publisher:
    """A plain paho MQTT 5 client; ``publish`` waits for the broker's PUBACK."""

    def __init__(self, url: str) -> None:
        parsed = httpx.URL(url.replace("mqtt://", "http://"))
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
        self.client.connect(parsed.host, parsed.port or 1883)
        self.client.loop_start()

    def publish(self, topic: str, payload: bytes | str, retain: bool = False, qos: int = 1) -> None:
        self.client.publish(topic, payload, qos=qos, retain=retain).wait_for_publish(10)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


class Listener:
    """Collects what arrives on a topic filter (e.g. the dead letters)."""

    def __init__(self, url: str, topic_filter: str) -> None:
        self.messages: list[tuple[str, bytes]] = []
        parsed = httpx.URL(url.replace("mqtt://", "http://"))
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
        subscribed = threading.Event()
        self.client.on_subscribe = lambda *args: subscribed.set()
        self.client.on_message = lambda c, u, m: self.messages.append((m.topic, bytes(m.payload)))
        self.client.connect(parsed.host, parsed.port or 1883)
        self.client.loop_start()
        self.client.subscribe(topic_filter, qos=1)
        assert subscribed.wait(10)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture
def publisher(settings: RunhoursSettings) -> Iterator[Publisher]:
    client = Publisher(settings.mqtt_url)
    yield client
    client.close()


@pytest.fixture
def ingest(settings: RunhoursSettings, influx: InfluxClient) -> Iterator[IngestService]:
    with IngestService(
        ingest_settings(settings, metrics_port=free_port(), stats_interval=0.2)
    ) as svc:
        yield svc


def count(influx: InfluxClient, field: str = "load_pct") -> int:
    return sum(influx.count("telemetry", field).values())


# -- pure parts: points, bytes, dead letters, settings --------------------------------


def test_points_are_exact_line_protocol() -> None:
    ref, message = decode_telemetry(
        "runhours/v1/plant1/line-a/cnc-01/telemetry",
        json.dumps(
            {
                "machine": "cnc-01",
                "seq": 3,
                "samples": [
                    {"ts": T0 - 500, "state": "running", "values": {"spindle_current_a": 12}},
                    {"ts": "2026-09-21T16:00:00.250+02:00", "values": {"vibration_mm_s": 2.5}},
                ],
                "counters": {"run_seconds_total": 7200},
            }
        ),
    )
    points = telemetry_points(ref, message)
    assert encode_points(points) == (
        b"telemetry,line=line-a,machine=cnc-01,site=plant1 "
        b'spindle_current_a=12.0,state="running" 1789999199500\n'
        b"telemetry,line=line-a,machine=cnc-01,site=plant1 "
        b"vibration_mm_s=2.5,run_seconds_total=7200.0 1789999200250"
    )
    # The two samples straddle an hour: one marker per machine-hour, +1 ns each.
    markers = touched_markers(Counter({(ref, T0 - HOUR): 1, (ref, T0): 1}), now_ns=42)
    assert encode_points(markers) == (
        b"ingest_touched,line=line-a,machine=cnc-01,site=plant1 hour=1789995600000.0,points=1.0 42\n"
        b"ingest_touched,line=line-a,machine=cnc-01,site=plant1 hour=1789999200000.0,points=1.0 43"
    )
    status = Status(online=False, ts=datetime(2026, 9, 21, 14, tzinfo=UTC), buffered=4)
    assert encode_points([status_point(MachineRef("p", "l", "m"), status)]) == (
        b"machine_status,line=l,machine=m,site=p online=0.0,buffered=4.0 1789999200000"
    )


@pytest.mark.parametrize(
    ("values", "counters", "reason"),
    [
        ({"state": 1}, {}, "samples.0.values.state: the name is reserved"),
        ({"x": 1}, {"x": 2}, "counters.x: the last sample already has a field"),
        ({"time": 1, "x": 2}, {}, "samples.0.values.time: the name is reserved"),
        ({"machine": 1}, {}, "samples.0.values.machine: the name is reserved"),
        ({"x": 1}, {"time": 2}, "counters.time: the name is reserved"),
        ({"x": 1}, {"site": 2}, "counters.site: the name is reserved"),
    ],
)
def test_colliding_field_names_are_refused(
    values: dict[str, int], counters: dict[str, int], reason: str
) -> None:
    body = {"machine": "m", "seq": 0, "samples": [{"ts": T0, "values": values}]}
    if counters:
        body["counters"] = counters
    decoded = decode_message("runhours/v1/s/l/m/telemetry", json.dumps(body).encode())
    assert decoded.error is not None and decoded.error.startswith(reason)
    assert decoded.lines == b""


def test_deadletter_payload_is_exact_json() -> None:
    at = datetime(2026, 9, 21, 14, 0, 0, 250_000, tzinfo=UTC)
    assert deadletter_payload("runhours/v1/s/l/m/telemetry", b'{"seq":', "bad", at) == (
        b'{"topic":"runhours/v1/s/l/m/telemetry","reason":"bad","payload":"{\\"seq\\":",'
        b'"received_at":"2026-09-21T14:00:00.250Z"}'
    )
    binary = deadletter_payload("t", b"\xff\x00", "bad", at)
    assert json.loads(binary) == {
        "topic": "t",
        "reason": "bad",
        "payload": base64.b64encode(b"\xff\x00").decode(),
        "payload_encoding": "base64",
        "received_at": "2026-09-21T14:00:00.250Z",
    }


def test_subscription_filters() -> None:
    assert telemetry_filter() == "runhours/v1/+/+/+/telemetry"
    assert telemetry_filter("ingest", site="s1") == "$share/ingest/runhours/v1/s1/+/+/telemetry"
    assert status_subscription("s1") == "runhours/v1/s1/+/+/status"


def test_settings_from_toml_and_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    example = load_settings(IngestSettings, REPO / "ingest" / "example.toml")
    assert example.ingest.share_group is None and example.ingest.metrics_port == 9108
    monkeypatch.setenv("RUNHOURS_INGEST__BATCH_POINTS", "123")
    assert (
        load_settings(IngestSettings, REPO / "ingest" / "example.toml").ingest.batch_points == 123
    )
    bad = tmp_path / "bad.toml"
    bad.write_text('[ingest]\nsite = "plant 1"\nmax_inflight = 70000\n')
    with pytest.raises(SettingsError) as info:
        load_settings(IngestSettings, bad)
    message = str(info.value)
    assert "ingest.site: 'plant 1' is not a valid id" in message
    assert "ingest.max_inflight: Input should be less than or equal to 65535" in message


# -- the real pipeline --------------------------------------------------------------


def test_valid_messages_land_exactly(
    ingest: IngestService, publisher: Publisher, influx: InfluxClient, test_id: str
) -> None:
    site = test_id
    publisher.publish(
        topic(site, "cnc-01"),
        json.dumps(
            {
                "machine": "cnc-01",
                "seq": 0,
                "samples": [
                    {
                        "ts": T0 - 500,
                        "state": "running",
                        "values": {"load_pct": 80, "temp_c": 41.5},
                    },
                    {"ts": T0 + 250, "values": {"load_pct": 81.25}},
                ],
                "counters": {"run_seconds_total": 3600},
            }
        ),
    )
    publisher.publish(
        topic(site, "pump-7", line="l2"),
        json.dumps({"machine": "pump-7", "seq": 9, "samples": [{"ts": T0, "state": "idle"}]}),
    )
    publisher.publish(
        topic(site, "pump-7", line="l2", leaf="status"),
        json.dumps({"online": True, "ts": T0, "buffered": 3, "dropped_total": 0}),
        retain=True,
    )
    will_sent_ms = time.time_ns() // 1_000_000
    publisher.publish(  # what the agent's will says
        topic(site, "pump-7", line="l2", leaf="status"),
        json.dumps({"online": False, "ts": T0 + 1000}),
        retain=True,
    )
    wait_for(lambda: ingest.stats.messages_acked == 4, 10, "4 acks")
    rows = influx.query_rows("SELECT * FROM telemetry ORDER BY time")
    assert rows == [
        {"time": T0 - 500, "line": "l1", "machine": "cnc-01", "site": site, "state": "running",
         "load_pct": 80.0, "temp_c": 41.5, "run_seconds_total": None},
        {"time": T0, "line": "l2", "machine": "pump-7", "site": site, "state": "idle",
         "load_pct": None, "temp_c": None, "run_seconds_total": None},
        {"time": T0 + 250, "line": "l1", "machine": "cnc-01", "site": site, "state": None,
         "load_pct": 81.25, "temp_c": None, "run_seconds_total": 3600.0},
    ]  # fmt: skip
    status = influx.query_rows("SELECT * FROM machine_status ORDER BY time")
    assert [(r["time"], r["online"], r["buffered"], r["dropped_total"]) for r in status] == [
        (T0, 1.0, 3.0, 0.0),
        (status[1]["time"], 0.0, None, None),
    ]
    # The will is dated by its arrival (its own ts is when the agent connected).
    assert will_sent_ms <= status[1]["time"] <= time.time_ns() // 1_000_000
    # ingest_touched: which machine-hours got how many points (sum over the markers).
    touched: Counter[tuple[str, int]] = Counter()
    for row in influx.query_rows("SELECT * FROM ingest_touched", epoch="ns"):
        touched[(row["machine"], int(row["hour"]))] += int(row["points"])
    assert touched == {("cnc-01", T0 - HOUR): 1, ("cnc-01", T0): 1, ("pump-7", T0): 1}
    # Prometheus metrics of this worker, and the ingest_stats point for Grafana.
    text = httpx.get(f"http://127.0.0.1:{ingest.metrics_port}/metrics").text
    assert 'runhours_ingest_messages_received_total{kind="telemetry"} 2.0' in text
    assert 'runhours_ingest_messages_received_total{kind="status"} 2.0' in text
    assert "runhours_ingest_points_written_total 5.0" in text
    assert "runhours_ingest_queue_depth 0.0" in text
    assert "runhours_ingest_subscribed 1.0" in text  # what the compose health check waits for

    def stats_written() -> bool:
        rows = influx.query_rows("SELECT last(points_written) FROM ingest_stats")
        return bool(rows) and rows[0]["last"] == 5.0

    wait_for(stats_written, 5, "an ingest_stats point with points_written = 5")
    # Clearing the retained status (empty payload) is acknowledged and stores nothing.
    publisher.publish(topic(site, "pump-7", line="l2", leaf="status"), b"", retain=True)
    wait_for(lambda: ingest.stats.messages_acked == 5, 10, "the clearing message acked")
    assert ingest.stats.points_written == 5 and ingest.stats.messages_invalid == 0


def test_mosquitto_pub_message_lands(
    ingest: IngestService, settings: RunhoursSettings, influx: InfluxClient, test_id: str
) -> None:
    """A client we did not write, publishing the documented format (RFC 3339 and epoch ms)."""
    payload = (
        '{"machine": "press-2", "seq": 0, "samples": ['
        '{"ts": "2026-09-21T16:00:00.250+02:00", "state": "running", "values": {"load_pct": 55}},'
        f' {{"ts": {T0 + 1000}, "values": {{"load_pct": 56.5}}}}]}}'
    )
    mqtt_url = settings.mqtt
    subprocess.run(
        ["mosquitto_pub", "-h", mqtt_url.host, "-p", str(mqtt_url.port), "-V", "mqttv5",
         "-q", "1", "-t", topic(test_id, "press-2"), "-m", payload],
        check=True, timeout=10,
    )  # fmt: skip
    wait_for(lambda: count(influx) == 2, 10, "2 points")
    rows = influx.query_rows("SELECT load_pct, state FROM telemetry ORDER BY time")
    assert [(r["time"], r["load_pct"], r["state"]) for r in rows] == [
        (T0 + 250, 55.0, "running"),
        (T0 + 1000, 56.5, None),
    ]


def test_invalid_messages_go_to_dead_letters_and_valid_ones_flow(
    ingest: IngestService,
    publisher: Publisher,
    influx: InfluxClient,
    settings: RunhoursSettings,
    test_id: str,
) -> None:
    site = test_id
    dead = Listener(settings.mqtt_url, f"runhours/v1/deadletter/{site}/#")
    good = iter(range(100))

    def valid() -> None:
        seq = next(good)
        publisher.publish(topic(site, "m-1"), telemetry("m-1", seq, T0 + seq * 1000, n=3))

    sample = {"ts": T0, "values": {"load_pct": 1}}
    cases: list[tuple[str, bytes, str]] = [
        (topic(site, "m-1"), b'{"machine": "m-1", "seq": 1, "samples": [', "payload: malformed JSON"),
        (topic(site, "m-1"), b"\xff\xfe\x00binary", "payload: malformed JSON"),
        (topic(site, "m-1"), json.dumps({"machine": "m-1", "seq": "one", "samples": [sample]}).encode(),
         "seq: Input should be a valid integer"),
        (topic(site, "m-1"), json.dumps({"machine": "m-1", "seq": 1, "samples": [
            {"ts": T0, "values": {"load_pct": "high"}}]}).encode(), "samples.0.values.load_pct"),
        (topic(site, "m-1"), json.dumps({"machine": "m-2", "seq": 1, "samples": [sample]}).encode(),
         "machine: payload says 'm-2' but the topic says 'm-1'"),
        (topic(site, "m-1"), json.dumps({"machine": "m-1", "seq": 1, "samples": [
            {"ts": "2026-09-21T14:00:00", "state": "idle"}]}).encode(), "samples.0.ts: naive timestamp"),
        (topic(site, "cnc 01"), json.dumps({"machine": "cnc 01", "seq": 1, "samples": [sample]}).encode(),
         "topic.machine: 'cnc 01' is not a valid id"),
        (topic(site, "cnc,01"), json.dumps({"machine": "cnc,01", "seq": 1, "samples": [sample]}).encode(),
         "topic.machine: 'cnc,01' is not a valid id"),
        (topic(site, "cnc-01"), json.dumps({"machine": "cnc,01", "seq": 1, "samples": [sample]}).encode(),
         "machine: 'cnc,01' is not a valid id"),
        (topic(site, "m-1"), json.dumps({"machine": "m-1", "seq": 1, "samples": []}).encode(),
         "samples: List should have at least 1 item"),
        # InfluxDB would silently drop a field called `time` and store the rest.
        (topic(site, "m-1"), json.dumps({"machine": "m-1", "seq": 1, "samples": [
            {"ts": T0 + 999_999, "values": {"load_pct": 1, "time": 2}}]}).encode(),
         "samples.0.values.time: the name is reserved"),
        (topic(site, "m-1", leaf="status"), b'{"online": "yes", "ts": 1}', "online: Input should be a valid boolean"),
    ]  # fmt: skip
    try:
        valid()
        for case_topic, payload, _ in cases:
            publisher.publish(case_topic, payload)
            valid()
        wait_for(lambda: len(dead.messages) >= len(cases), 10, "every dead letter")
        wait_for(lambda: count(influx) == 3 * (len(cases) + 1), 10, "every valid point")
    finally:
        dead.close()
    assert len(dead.messages) == len(cases)
    letters = [json.loads(payload) for _, payload in dead.messages]
    for (case_topic, payload, reason), (dl_topic, _), letter in zip(
        cases, dead.messages, letters, strict=True
    ):
        assert dl_topic == case_topic.replace("runhours/v1/", "runhours/v1/deadletter/", 1)
        assert letter["topic"] == case_topic
        assert reason in letter["reason"], (reason, letter["reason"])
        if letter.get("payload_encoding") == "base64":
            assert base64.b64decode(letter["payload"]) == payload
        else:
            assert letter["payload"].encode() == payload
        received = datetime.fromisoformat(letter["received_at"])
        assert abs((datetime.now(UTC) - received).total_seconds()) < 60
    assert letters[1]["payload_encoding"] == "base64"
    wait_for(lambda: ingest.stats.held == 0, 5, "every message acknowledged")
    stats = ingest.stats
    assert (stats.messages_invalid, stats.messages_acked) == (len(cases), 2 * len(cases) + 1)


def test_same_message_twice_is_stored_once(
    ingest: IngestService, publisher: Publisher, influx: InfluxClient, test_id: str
) -> None:
    message = telemetry("m-1", 0, T0, n=7)
    publisher.publish(topic(test_id, "m-1"), message)
    publisher.publish(topic(test_id, "m-1"), message)
    wait_for(lambda: ingest.stats.messages_acked == 2, 10, "both copies acknowledged")
    assert count(influx) == 7
    assert ingest.stats.points_written == 14  # written twice, stored once


def test_influxdb_400_isolates_the_bad_message(
    ingest: IngestService,
    publisher: Publisher,
    influx: InfluxClient,
    settings: RunhoursSettings,
    test_id: str,
) -> None:
    """InfluxDB refuses a point whose field type conflicts; only its message is dead-lettered."""
    influx.write_lines(f'telemetry,site={test_id},line=l0,machine=old code="A7" {T0}'.encode())
    dead = Listener(settings.mqtt_url, f"runhours/v1/deadletter/{test_id}/#")
    try:
        for seq in range(6):
            extra = {"code": 7} if seq == 3 else {}
            body = json.loads(telemetry("m-1", seq, T0 + seq * 1000, n=2))
            body["samples"][0]["values"].update(extra)
            publisher.publish(topic(test_id, "m-1"), json.dumps(body))
        wait_for(lambda: len(dead.messages) == 1, 10, "one dead letter")
    finally:
        dead.close()
    letter = json.loads(dead.messages[0][1])
    assert json.loads(letter["payload"])["seq"] == 3
    assert "InfluxDB rejected the points" in letter["reason"]
    assert "field type conflict" in letter["reason"]
    wait_for(lambda: ingest.stats.held == 0, 5, "every message settled")
    # The good messages are stored; of the bad one, InfluxDB kept its other point.
    assert count(influx) == 5 * 2 + 1


def test_receive_maximum_bounds_what_a_worker_holds(
    settings: RunhoursSettings, publisher: Publisher, influx: InfluxClient, test_id: str
) -> None:
    """With InfluxDB unreachable the worker holds exactly max_inflight messages; the rest
    waits on the broker and arrives once a worker can write again."""
    dead_influx = settings.model_copy(update={"influx_url": f"http://127.0.0.1:{free_port()}"})
    blocked = IngestService(ingest_settings(dead_influx, max_inflight=10))
    with blocked:
        for seq in range(50):
            publisher.publish(topic(test_id, "m-1"), telemetry("m-1", seq, T0 + seq * 1000))
        wait_for(lambda: blocked.stats.write_retries >= 3, 10, "write retries")
        time.sleep(0.5)  # room for any message beyond the window to (wrongly) arrive
        stats = blocked.stats
        assert (stats.messages_received, stats.held, stats.max_held) == (10, 10, 10)
        assert stats.messages_acked == 0
        blocked.stop(timeout=0.2)  # gives up: the held messages stay unacknowledged
    with IngestService(ingest_settings(settings)) as worker:  # same client id, same session
        wait_for(lambda: count(influx) == 50 * 5, 15, "all 250 points")
        assert worker.wait_idle(5)
        assert worker.stats.messages_received == 50
        assert worker.stats.max_held <= 2000


def test_qos0_messages_beyond_the_window_are_dropped_and_counted(
    settings: RunhoursSettings, publisher: Publisher, test_id: str
) -> None:
    """Receive Maximum does not bound QoS 0: the worker itself must, or memory grows."""
    dead_influx = settings.model_copy(update={"influx_url": f"http://127.0.0.1:{free_port()}"})
    with IngestService(ingest_settings(dead_influx, max_inflight=10)) as blocked:
        for seq in range(50):
            publisher.publish(topic(test_id, "m-1"), telemetry("m-1", seq, T0 + seq), qos=0)
        wait_for(lambda: blocked.stats.qos0_dropped == 40, 10, "40 QoS 0 drops")
        assert (blocked.stats.held, blocked.stats.max_held) == (10, 10)
        blocked.stop(timeout=0.2)


def test_sigkill_mid_stream_then_restart_loses_and_duplicates_nothing(
    settings: RunhoursSettings, influx: InfluxClient, test_id: str, tmp_path: Path
) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RUNHOURS_")}
    env.update(
        RUNHOURS_MQTT_URL=settings.mqtt_url,
        RUNHOURS_INFLUX_URL=settings.influx_url,
        RUNHOURS_INFLUX_DB=settings.influx_db,
        RUNHOURS_DATA_DIR=str(tmp_path / "var"),
        RUNHOURS_INGEST__SITE=test_id,
        RUNHOURS_INGEST__CLIENT_ID=f"ingest-{test_id}",
        RUNHOURS_INGEST__BATCH_INTERVAL="0.05",
    )

    def launch(name: str) -> tuple[subprocess.Popen[bytes], Path]:
        log = tmp_path / f"{name}.log"
        with log.open("wb") as out:
            # `runhours ingest` itself, without importing the other commands (whose
            # modules other engineers may be changing while this suite runs).
            process = subprocess.Popen(
                [sys.executable, "-c", INGEST_CLI],
                cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT,
            )  # fmt: skip
        try:
            wait_for(
                lambda: b"ready:" in log.read_bytes() or process.poll() is not None,
                30,
                f"{name} to subscribe",
            )
            assert process.poll() is None
        except AssertionError:
            process.kill()
            process.wait()
            raise AssertionError(log.read_text()) from None
        return process, log

    total, samples = 600, 5
    published = 0
    publisher = Publisher(settings.mqtt_url)

    def publish_all() -> None:
        nonlocal published
        for seq in range(total):
            publisher.publish(
                topic(test_id, f"m-{seq % 3}"), telemetry(f"m-{seq % 3}", seq, T0 + seq * 1000)
            )
            published += 1
            time.sleep(0.004)

    processes: list[subprocess.Popen[bytes]] = []
    feeder = threading.Thread(target=publish_all)
    try:
        first, _ = launch("first")
        processes.append(first)
        feeder.start()
        wait_for(lambda: count(influx) >= 100, 20, "the first points")
        first.send_signal(signal.SIGKILL)
        first.wait(10)
        assert published < total, "the publisher had finished before the kill"
        time.sleep(0.3)
        second, second_log = launch("second")
        processes.append(second)
        feeder.join(30)
        wait_for(lambda: count(influx) == total * samples, 30, f"{total * samples} points")
        second.send_signal(signal.SIGTERM)
        assert second.wait(20) == 0, second_log.read_text()
        assert b"ingest stopped:" in second_log.read_bytes()
    finally:
        if feeder.is_alive() or feeder.ident is not None:
            feeder.join(30)
        publisher.close()
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.wait()
    per_machine = influx.count("telemetry", "load_pct")
    assert per_machine == {"m-0": 1000, "m-1": 1000, "m-2": 1000}
    # The graceful stop acknowledged everything: the session holds nothing more.
    with IngestService(ingest_settings(settings)) as again:
        time.sleep(0.5)
        assert again.stats.messages_received == 0


def test_influxdb_outage_loses_nothing(
    own_services: LocalServices, own_settings: RunhoursSettings, test_id: str
) -> None:
    publisher = Publisher(own_settings.mqtt_url)
    influx = InfluxClient(own_settings.influx_url, own_settings.influx_db)
    try:
        with IngestService(ingest_settings(own_settings, max_inflight=25)) as worker:
            for seq in range(20):
                publisher.publish(topic(test_id, "m-1"), telemetry("m-1", seq, T0 + seq * 1000))
            wait_for(lambda: count(influx) == 100, 10, "the first 100 points")
            own_services.influxdb.stop()
            down_at = time.monotonic()
            for seq in range(20, 120):
                publisher.publish(topic(test_id, "m-1"), telemetry("m-1", seq, T0 + seq * 1000))
            wait_for(lambda: worker.stats.held == 25, 5, "a full in-flight window")
            time.sleep(max(0.0, 10 - (time.monotonic() - down_at)))  # a 10 s outage
            assert worker.stats.max_held == 25
            own_services.influxdb.start()
            wait_for(lambda: count(influx) == 600, 20, "all 600 points")
            assert worker.wait_idle(5)
            assert worker.stats.write_retries > 0
            assert worker.stats.messages_received == 120
    finally:
        publisher.close()
        influx.close()


def test_broker_restart_while_ingest_runs(
    own_services: LocalServices, own_settings: RunhoursSettings, test_id: str
) -> None:
    """The broker goes away while the worker holds written-but-unacked messages: their acks
    belong to the old connection and are dropped; the broker redelivers them (from its
    persistence) after the restart, and messages published afterwards arrive too."""
    influx = InfluxClient(own_settings.influx_url, own_settings.influx_db)
    publisher = Publisher(own_settings.mqtt_url)
    # A long batch interval keeps the first messages unacknowledged while the broker stops.
    settings = ingest_settings(own_settings, batch_interval=2.0)
    try:
        with IngestService(settings) as worker:
            for seq in range(30):
                publisher.publish(topic(test_id, "m-1"), telemetry("m-1", seq, T0 + seq * 1000))
            publisher.close()
            wait_for(lambda: worker.stats.messages_received == 30, 5, "30 messages")
            own_services.mosquitto.stop()
            wait_for(lambda: worker.stats.acks_dropped == 30, 5, "30 stale acks dropped")
            assert count(influx) == 150  # written, but not acknowledged
            own_services.mosquitto.start()
            assert worker.wait_ready(15)
            publisher = Publisher(own_settings.mqtt_url)
            for seq in range(30, 60):
                publisher.publish(topic(test_id, "m-1"), telemetry("m-1", seq, T0 + seq * 1000))
            wait_for(lambda: worker.stats.messages_received == 90, 15, "redelivered + new")
            assert worker.wait_idle(10)
            assert count(influx) == 300
            assert worker.stats.connects == 2
        with IngestService(settings) as again:  # every message was acknowledged in the end
            time.sleep(0.5)
            assert again.stats.messages_received == 0
    finally:
        publisher.close()
        influx.close()


def test_two_workers_share_one_subscription(
    settings: RunhoursSettings, publisher: Publisher, influx: InfluxClient, test_id: str
) -> None:
    group = f"g{test_id[-6:]}"
    a = IngestService(ingest_settings(settings, share_group=group, client_id=f"a-{test_id}"))
    b = IngestService(ingest_settings(settings, share_group=group, client_id=f"b-{test_id}"))
    with a, b:
        for seq in range(200):
            machine = f"m-{seq % 4}"
            publisher.publish(topic(test_id, machine), telemetry(machine, seq, T0 + seq * 1000))
        wait_for(lambda: count(influx) == 1000, 15, "all 1000 points")
        assert a.wait_idle(5) and b.wait_idle(5)
        got_a, got_b = a.stats.messages_received, b.stats.messages_received
    assert got_a > 0 and got_b > 0 and got_a + got_b == 200, (got_a, got_b)
    assert influx.count("telemetry", "load_pct") == {f"m-{i}": 250 for i in range(4)}


def test_an_offline_will_is_dated_by_its_arrival_not_its_connect_time() -> None:
    will = b'{"online": false, "ts": 1000}'
    online = b'{"online": true, "ts": 1001}'
    topic = "runhours/v1/s/l/m/status"
    assert decode_message(topic, online, 5000).lines.endswith(b" 1001")
    assert decode_message(topic, will, 5000).lines.endswith(b" 5000")
    assert decode_message(topic, will).lines.endswith(b" 1000")


@pytest.mark.parametrize("secure", [True, False])
def test_tls_settings_mean_what_they_mean_for_the_edge(
    tls_broker: tuple[int, Path], influx: InfluxClient, secure: bool
) -> None:
    """``mqtt_ca_file`` trusts our CA; ``mqtt_tls_insecure`` skips the certificate checks
    (testing only), as it does for ``runhours edge``, so one settings file serves both."""
    port, ca = tls_broker
    base = RunhoursSettings(
        mqtt_url=f"mqtts://edge:s3cret@localhost:{port}",  # not the certificate's CN
        mqtt_ca_file=ca if secure else None,
        mqtt_tls_insecure=not secure,
        influx_url=influx.url,
        influx_db=influx.database,
    )
    with IngestService(ingest_settings(base, site="+")) as ingest:
        assert ingest.wait_ready(5)


def test_statuses_queued_during_an_ingest_outage_keep_their_order() -> None:
    """The ingest was down while an agent died (its will) and came back (online): the
    queued will is dated at its arrival, so the newer online behind it must sort after."""
    topic = "runhours/v1/s/l/m/status"
    floor: dict[MachineRef, int] = {}
    arrival = 9_000
    online_t1 = decode_message(topic, b'{"online": true, "ts": 1000}', arrival, floor)
    will = decode_message(topic, b'{"online": false, "ts": 1000}', arrival, floor)
    online_t2 = decode_message(topic, b'{"online": true, "ts": 5000}', arrival, floor)
    times = [int(d.lines.rsplit(b" ", 1)[1]) for d in (online_t1, will, online_t2)]
    assert times == [1000, 9000, 9001]  # the machine is online at the end, as it is
    assert floor == {MachineRef("s", "l", "m"): 9001}


# -- delivery: presence, sequence gaps, durable dead letters --------------------------------


def test_a_worker_announces_itself_online_once_subscribed_and_offline_when_it_stops(
    settings: RunhoursSettings, influx: InfluxClient, test_id: str
) -> None:
    state_topic = ingest_state_topic(f"ingest-{settings.influx_db}")

    def retained() -> IngestState:
        listener = Listener(settings.mqtt_url, state_topic)
        try:
            wait_for(lambda: bool(listener.messages), 5, "the retained ingest state")
            return decode_ingest_state(listener.messages[-1][1])
        finally:
            listener.close()

    with IngestService(ingest_settings(settings)):
        online = retained()
    offline = retained()
    assert (online.online, online.site) == (True, test_id)
    assert (offline.online, offline.site, offline.ts) == (False, test_id, online.ts)


def test_sequence_gaps_are_reported_exactly_and_late_messages_recover_them(
    settings: RunhoursSettings,
    influx: InfluxClient,
    publisher: Publisher,
    test_id: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Five samples per message, so message s has offset 5·s. Messages 2-3 go missing (2
    arrives late), a status says 0-6 were acknowledged to the edge (5-6 never came): two
    gaps of 10 samples each, 5 recovered; a restarted worker resumes where it stood."""

    def send(seq: int) -> None:
        body = telemetry("m-1", seq, T0 + seq * 1000, offset=5 * seq)
        publisher.publish(topic(test_id, "m-1"), body)

    def status(delivered: int) -> None:
        body = {
            "online": True,
            "ts": T0,
            "delivered_seq": delivered,
            "delivered_offset": 5 * delivered,
        }
        publisher.publish(topic(test_id, "m-1", leaf="status"), json.dumps(body))

    def settled(worker: IngestService, received: int) -> Callable[[], bool]:
        return lambda: worker.stats.messages_received == received and worker.stats.held == 0

    with (
        caplog.at_level(logging.INFO, logger="ingest.service"),
        IngestService(ingest_settings(settings)) as worker,
    ):
        for seq in (0, 1, 4, 2, 1):  # 2 late, 1 twice
            send(seq)
        status(7)
        wait_for(settled(worker, 6), 10, "six messages settled")
        s = worker.stats
        assert (s.gaps, s.gap_messages, s.gap_samples) == (2, 4, 20)
        assert (s.late_messages, s.late_samples, s.duplicates) == (1, 5, 1)
    assert "lost in transit (seq 2-3, 10 samples)" in caplog.text

    def gaps() -> list[tuple[int, ...]]:
        rows = influx.query_rows("SELECT * FROM ingest_gaps ORDER BY time")
        names = ("first_seq", "last_seq", "messages", "samples", "recovered_messages")
        return [tuple(int(r[n]) for n in (*names, "recovered_samples")) for r in rows]

    assert gaps() == [(2, 3, 2, 10, 1, 5), (5, 6, 2, 10, 0, 0)]
    with IngestService(ingest_settings(settings)) as again:
        send(2)  # recovered before the restart, redelivered: a duplicate, not late again
        send(3)  # the rest of the first gap, later still
        send(7)  # right after what the status said: no new gap
        wait_for(settled(again, 3), 10, "three messages settled")
        s = again.stats
        assert (s.gaps, s.late_messages, s.duplicates) == (0, 1, 1)
    assert gaps() == [(2, 3, 2, 10, 2, 10), (5, 6, 2, 10, 0, 0)]
    assert count(influx) == 5 * 6  # seq 0-4 and 7: every message that came is stored, once

    env = {
        "RUNHOURS_MQTT_URL": settings.mqtt_url,
        "RUNHOURS_INFLUX_URL": settings.influx_url,
        "RUNHOURS_INFLUX_DB": settings.influx_db,
        "COLUMNS": "200",
    }
    result = CliRunner().invoke(cli, ["ingest", "status", "--since", "now-1h"], env=env)
    assert result.exit_code == 1, result.output  # something was lost
    assert "lost in transit 2 messages (10 samples)" in result.output
    assert f"{test_id}/l1/m-1" in result.output


def test_a_restart_rewrites_the_gaps_a_crash_kept_from_the_main_database(
    settings: RunhoursSettings, influx: InfluxClient, publisher: Publisher, test_id: str
) -> None:
    """The ingest writes its state copy first, then the points: a worker that died between
    the two left a gap (seq 2-3) in its state database only. The next worker resumes from
    the state, writes that gap into the main database (same point), and does not count it
    again when the messages of the batch come back."""
    ref = MachineRef(test_id, "l1", "m-1")
    key_ns = time.time_ns() - 60_000_000_123  # found a minute ago
    state = influx.sibling(ingest_state_database(settings.influx_db))
    with state:
        state.ensure_database()
        state.write_lines(
            encode_points(
                [
                    gap_point(Gap(ref, 2, 3, 10, key_ns), "unknown", "dead-worker"),
                    sequence_point(ref, 4, 25, "dead-worker", time.time_ns()),
                ]
            ),
            precision="ns",
        )
    assert influx.query_rows("SELECT * FROM ingest_gaps") == []
    with IngestService(ingest_settings(settings)) as worker:
        for seq in (4, 5):  # 4: redelivered (never acknowledged), 5: the next one
            body = telemetry("m-1", seq, T0 + seq * 1000, offset=5 * seq)
            publisher.publish(topic(test_id, "m-1"), body)
        wait_for(
            lambda: worker.stats.messages_received == 2 and worker.stats.held == 0, 10, "settled"
        )
        assert (worker.stats.gaps, worker.stats.duplicates) == (0, 1)
    rows = influx.query_rows("SELECT * FROM ingest_gaps", epoch="ns")
    assert [
        (r["time"], r["first_seq"], r["last_seq"], r["samples"], r["worker"]) for r in rows
    ] == [(key_ns, 2, 3, 10, "dead-worker")]
    assert count(influx) == 5 * 2


def test_unreadable_missing_ranges_reopen_the_whole_gap(
    settings: RunhoursSettings,
    influx: InfluxClient,
    publisher: Publisher,
    test_id: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A gap whose stored ``missing`` cannot be read is reopened whole (as before ranges
    were stored), with a warning: the worker starts, and a late message still recovers it."""
    ref = MachineRef(test_id, "l1", "m-1")
    gap = gap_point(Gap(ref, 2, 3, 10, time.time_ns() - 60_000_000_000), "unknown", "old")
    with influx.sibling(ingest_state_database(settings.influx_db)) as state:
        state.ensure_database()
        state.write_lines(
            encode_points(
                [
                    gap._replace(fields={**gap.fields, "missing": "2-?"}),
                    sequence_point(ref, 4, 25, "old", time.time_ns()),
                ]
            ),
            precision="ns",
        )
    with (
        caplog.at_level(logging.WARNING, logger="ingest.service"),
        IngestService(ingest_settings(settings)) as worker,
    ):
        publisher.publish(topic(test_id, "m-1"), telemetry("m-1", 3, T0 + 3000, offset=15))
        wait_for(
            lambda: worker.stats.messages_received == 1 and worker.stats.held == 0, 10, "settled"
        )
        assert (worker.stats.late_messages, worker.stats.late_samples) == (1, 5)
    assert "gap 2-3 of " in caplog.text and "unreadable missing ranges '2-?'" in caplog.text


def test_dead_letters_are_stored_before_the_ack_and_replayed_once_the_cause_is_fixed(
    settings: RunhoursSettings, influx: InfluxClient, publisher: Publisher, test_id: str
) -> None:
    big = telemetry("m-2", 0, T0, n=40, offset=0)  # valid, but more than the worker takes
    bad = json.dumps({"machine": "m-2", "seq": 1, "offset": 40, "samples": []}).encode()
    assert len(big) > 1024
    with IngestService(ingest_settings(settings, max_message_bytes=1024)) as worker:
        for body in (big, bad, telemetry("m-2", 2, T0 + 10_000, offset=40)):
            publisher.publish(topic(test_id, "m-2"), body)
        wait_for(lambda: worker.stats.messages_acked == 3, 10, "three messages settled")
        assert worker.stats.deadletters_stored == 2
        assert worker.stats.gaps == 0  # a dead-lettered message arrived: it is no gap
    files = list((settings.data_dir / "deadletters").glob("*.jsonl"))
    assert len(files) == 1 and len(files[0].read_bytes().splitlines()) == 2
    assert count(influx) == 5

    env = {
        "RUNHOURS_MQTT_URL": settings.mqtt_url,
        "RUNHOURS_INFLUX_URL": settings.influx_url,
        "RUNHOURS_INFLUX_DB": settings.influx_db,
        "RUNHOURS_DATA_DIR": str(settings.data_dir),
        "COLUMNS": "200",
    }
    listed = CliRunner().invoke(cli, ["deadletters", "list", "--format", "json"], env=env)
    assert listed.exit_code == 0, listed.output
    letters = json.loads(listed.output)
    assert [d["payload"].encode() for d in letters] == [big, bad]
    assert "more than the ingest takes" in letters[0]["reason"]
    assert "samples" in letters[1]["reason"]

    fixed = {**env, "RUNHOURS_INGEST__MAX_MESSAGE_BYTES": str(1 << 20)}  # the cause, fixed
    replay = CliRunner().invoke(cli, ["deadletters", "replay"], env=fixed)
    assert replay.exit_code == 1, replay.output  # the empty one still fails
    assert "replayed 1 dead letter(s) (40 points); 1 still failing" in replay.output
    assert count(influx) == 45
    again = CliRunner().invoke(cli, ["deadletters", "replay"], env=fixed)
    assert (
        "replayed 0 dead letter(s) (0 points); 1 still failing; 1 replayed before" in again.output
    )
    assert count(influx) == 45
