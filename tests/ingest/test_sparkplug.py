"""Sparkplug B into the ingest, with a third-party edge node (pysparkplug in .venv-sparkplug).

The node (tests/support/sparkplug_node.py) publishes births, data by alias and by name, skips a
seq, sends an alias no birth declared, and dies; InfluxDB must hold the data with the right
names, types and timestamps, the machine offline after the deaths, the gap counted, the
unknown alias dead-lettered and answered with a rebirth request (NCMD) that the node gets.
"""

from __future__ import annotations

import json
import queue
import struct
import subprocess
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from common.settings import MqttUrl, RunhoursSettings
from ingest import IngestService, IngestSettings
from ingest.config import SparkplugOptions
from ingest.sparkplug import SparkplugDecoder, value_name
from store import InfluxClient
from tests.support.paths import REPO
from tests.support.waiting import wait_for
from wire import MachineRef
from wire import sparkplug_b_pb2 as pb
from wire.sparkplug import (
    decode_state,
    metric_value,
    parse_sparkplug_topic,
    rebirth_request,
    state_topic,
)

NODE_PYTHON = REPO / ".venv-sparkplug" / "bin" / "python"
T0 = 1_772_400_000_000


def f32(x: float) -> float:
    return float(struct.unpack(">f", struct.pack(">f", x))[0])


class Node:
    """The pysparkplug edge node as a subprocess: ``send`` a command, wait for its events."""

    def __init__(self, url: str, group: str, node_id: str) -> None:
        assert NODE_PYTHON.exists(), f"{NODE_PYTHON} is missing: run scripts/setup --test"
        broker = MqttUrl.parse(url)
        self.process = subprocess.Popen(
            [str(NODE_PYTHON), str(REPO / "tests" / "support" / "sparkplug_node.py"), broker.host,
             str(broker.port), group, node_id],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        )  # fmt: skip
        self.events: queue.Queue[dict[str, Any]] = queue.Queue()
        self.ncmds: list[dict[str, Any]] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            event = json.loads(line)
            if event["event"] == "ncmd":
                self.ncmds.append(event)
            self.events.put(event)

    def send(self, command: str) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(command + "\n")
        self.process.stdin.flush()
        while True:
            event = self.events.get(timeout=15)
            if event == {"event": "done", "command": command.split()[0]}:
                return

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(10)
        self._reader.join(10)  # it ends at the pipe's end of file
        for pipe in (self.process.stdin, self.process.stdout):
            if pipe is not None:
                pipe.close()


def retained(url: str, topic: str) -> bytes:
    broker = MqttUrl.parse(url)
    got: queue.Queue[bytes] = queue.Queue()
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"t-{uuid.uuid4().hex[:8]}")
    client.on_connect = lambda c, *_: c.subscribe(topic, 1)
    client.on_message = lambda _c, _u, m: got.put(bytes(m.payload))
    client.connect(broker.host, broker.port)
    client.loop_start()
    try:
        return got.get(timeout=10)
    finally:
        client.disconnect()
        client.loop_stop()


@pytest.fixture
def ingest(
    settings: RunhoursSettings, influx: InfluxClient, test_id: str
) -> Iterator[IngestService]:
    options = IngestSettings.from_base(
        settings,
        client_id=f"ingest-{test_id}",
        site=test_id,
        batch_interval=0.05,
        stats_interval=0,
        shutdown_timeout=5,
        sparkplug={
            "enabled": True,
            "host_id": f"host-{test_id}",
            "group": test_id,
            "site": "{group}",
            "line": "{node}",
            "machine": "{device}",
            "node_machine": "{node}-node",
            "metrics": {"Spindle/Speed rpm": "spindle_speed_rpm"},
        },
    )
    with IngestService(options) as service:
        yield service


def test_a_third_party_edge_node_lands_with_names_types_times_deaths_and_a_rebirth(
    settings: RunhoursSettings, influx: InfluxClient, ingest: IngestService, test_id: str
) -> None:
    host_state = decode_state(retained(settings.mqtt_url, state_topic(f"host-{test_id}")))
    assert host_state[0] is True  # the primary host is online (retained STATE)

    node = Node(settings.mqtt_url, test_id, "cell1")
    try:
        node.send("birth")
        m1 = MachineRef(test_id, "cell1", "m1")

        def online(machine: str) -> float | None:
            rows = influx.query_rows(
                f"SELECT last(online) FROM machine_status WHERE machine = '{machine}'"
            )
            return rows[0]["last"] if rows else None

        wait_for(lambda: online("m1") == 1.0 and online("cell1-node") == 1.0, 15, "births")
        node.send(f"data {T0} 20")
        node.send("skip")  # one seq never published: a gap of one message
        node.send(f"named {T0 + 20_000}")
        node.send(f"unknown {T0 + 21_000}")
        wait_for(lambda: bool(node.ncmds), 15, "a rebirth request")
        node.send("ddeath")
        wait_for(lambda: online("m1") == 0.0, 15, "DDEATH")
        # pysparkplug 0.6.1's clean NDEATH carries the *next* session's bdSeq (it renews its
        # will before disconnecting), which Sparkplug says to ignore as stale; the node's
        # death here is abrupt, so the broker publishes its will: the birth's bdSeq.
        node.process.kill()
        wait_for(lambda: online("cell1-node") == 0.0, 15, "NDEATH (the will)")
    finally:
        node.close()
    assert ingest.wait_idle(30)

    # The rebirth request reached the third-party node, on its NCMD topic.
    assert node.ncmds[0]["topic"] == f"spBv1.0/{test_id}/NCMD/cell1"
    assert node.ncmds[0]["metrics"] == {"Node Control/Rebirth": True}

    # Data: 20 samples by alias, with their own timestamps, names and types.
    rows = influx.query_rows(
        f"SELECT * FROM telemetry WHERE machine = 'm1' AND time >= {T0}ms "
        f"AND time <= {T0 + 21_000}ms ORDER BY time"
    )
    assert [r["time"] for r in rows] == [T0 + i * 1000 for i in range(21)]
    for i, row in enumerate(rows[:20]):
        assert (row["site"], row["line"]) == (m1.site, m1.line)
        assert row["state"] == ("running", "idle", "fault")[i % 3]
        assert row["spindle_speed_rpm"] == f32(1000.5 + i)
        assert row["bearing_temp_c"] == 40.125 + i / 8
        assert row["offset_mm"] == -5 - i  # Int16, negative: two's complement undone
        assert row["run_seconds_total"] == 3_600_000 + 10 * i
        assert row["door_open"] == (1.0 if i % 2 == 0 else 0.0)
    assert rows[20]["bearing_temp_c"] == 99.5  # by name (pysparkplug's update_device)
    assert rows[20]["state"] is None
    # The unknown alias: refused whole, kept as a dead letter, nothing stored at its time.
    assert ingest.stats.deadletters_stored == 1
    assert not influx.query_rows(f"SELECT * FROM telemetry WHERE time = {T0 + 21_000}ms")
    # The skipped seq: one gap of one message, under the edge node's machine.
    gaps = influx.query_rows("SELECT * FROM ingest_gaps")
    assert [(g["machine"], g["messages"]) for g in gaps] == [("cell1-node", 1.0)]
    # The births' own values are stored too (the node's supply voltage).
    assert (
        influx.query_rows(
            "SELECT count(supply_voltage_v) FROM telemetry WHERE machine = 'cell1-node'"
        )[0]["count"]
        == 1
    )


def test_the_primary_host_goes_offline_when_the_ingest_stops(
    settings: RunhoursSettings, influx: InfluxClient, test_id: str, ingest: IngestService
) -> None:
    topic = state_topic(f"host-{test_id}")
    online_ts = decode_state(retained(settings.mqtt_url, topic))
    ingest.stop()
    offline = decode_state(retained(settings.mqtt_url, topic))
    assert online_ts[0] is True and offline == (False, online_ts[1])  # same timestamp


def test_metric_values_and_names_decode_exactly() -> None:
    m = pb.Payload.Metric(datatype=pb.Int8, int_value=0xFF)
    assert metric_value(m, pb.Int8) == -1.0
    m = pb.Payload.Metric(datatype=pb.Int64, long_value=(1 << 64) - 2)
    assert metric_value(m, pb.Int64) == -2.0
    assert metric_value(pb.Payload.Metric(long_value=(1 << 64) - 2), pb.UInt64) == 2.0**64 - 2
    assert metric_value(pb.Payload.Metric(float_value=0.1), pb.Float) == 0.1
    assert metric_value(pb.Payload.Metric(is_null=True), pb.Double) is None
    assert value_name("Spindle/Speed (rpm)", {}) == "spindle_speed_rpm"
    assert value_name("42", {}) is None
    assert parse_sparkplug_topic("spBv1.0/g/DDATA/n/d") == ("g", "DDATA", "n", "d")
    ncmd = pb.Payload.FromString(rebirth_request(T0))
    assert [(x.name, x.boolean_value) for x in ncmd.metrics] == [("Node Control/Rebirth", True)]


def test_seq_wraps_and_a_stale_death_is_ignored() -> None:
    decoder = SparkplugDecoder(SparkplugOptions(enabled=True, node_machine="{node}"))

    def message(kind: str, seq: int | None, bd_seq: int | None = None, device: str = "") -> Any:
        payload = pb.Payload(timestamp=T0)
        if seq is not None:
            payload.seq = seq
        if bd_seq is not None:
            payload.metrics.add(name="bdSeq", datatype=pb.Int64, long_value=bd_seq)
        metric = payload.metrics.add(name="state", datatype=pb.String, string_value="idle")
        if kind in ("NDEATH", "DDEATH"):
            payload.metrics.remove(metric)
        tail = f"/{device}" if device else ""
        return decoder.decode(f"spBv1.0/g/{kind}/n{tail}", payload.SerializeToString(), T0)[0]

    birth = message("NBIRTH", 250, bd_seq=3)
    assert (birth.seq, birth.restart) == (250, True)
    seqs = [message("NDATA", s).seq for s in (251, 252, 253, 254, 255, 0, 1)]
    assert seqs == [251, 252, 253, 254, 255, 256, 257]  # wrapped, unwrapped
    assert message("NDEATH", None, bd_seq=2).points == 0  # an older session's will
    assert message("NDEATH", None, bd_seq=3).points == 1  # this session's: offline


def test_historical_metrics_land_at_their_own_time_and_transient_ones_nowhere() -> None:
    decoder = SparkplugDecoder(SparkplugOptions(enabled=True))
    birth = pb.Payload(timestamp=T0, seq=0)
    birth.metrics.add(name="load_pct", alias=1, datatype=pb.Double, double_value=1.0)
    decoder.decode("spBv1.0/g/NBIRTH/n", birth.SerializeToString(), T0)
    data = pb.Payload(timestamp=T0 + 5000, seq=1)
    data.metrics.add(alias=1, double_value=2.0, timestamp=T0 - 60_000, is_historical=True)
    data.metrics.add(alias=1, double_value=3.0)  # live, at the payload's time
    data.metrics.add(name="scratch_pct", datatype=pb.Double, double_value=9.0, is_transient=True)
    decoded, command = decoder.decode("spBv1.0/g/NDATA/n", data.SerializeToString(), T0)
    assert command is None and decoded.valid
    assert decoded.lines.decode().splitlines() == [
        f"telemetry,line=n,machine=n,site=g load_pct=2.0 {T0 - 60_000}",
        f"telemetry,line=n,machine=n,site=g load_pct=3.0 {T0 + 5000}",
    ]


def test_sparkplug_b_pb2_is_what_protoc_makes_of_the_proto(tmp_path: Path) -> None:
    subprocess.run([str(REPO / "scripts" / "protoc"), str(tmp_path)], check=True, cwd=REPO)
    for name in ("sparkplug_b_pb2.py", "sparkplug_b_pb2.pyi"):
        assert (tmp_path / name).read_bytes() == (REPO / "wire" / name).read_bytes(), name
