"""Edge agent benchmark: the SQLite buffer's cost, and the replay of a backlog.

    python -m bench.edge                      # 1,000,000-sample backlog
    python -m bench.edge --backlog 200000     # quicker

It starts its own Mosquitto (the project's config, a free port), with a subscriber that
plays the ingest's part (it announces itself on the ingest state topic, as a worker does,
and takes every message), and measures, in one run:

1. **append**: samples per second the agent's buffer takes (``EdgeAgent.submit``, 100 per
   call, as a source hands them over);
2. **live path**: samples per second through the agent (buffer → MQTT → PUBACK → delete)
   against the same messages published straight from memory by the same MQTT client
   library, without a buffer: the ratio is what store-and-forward costs (target ≤ 2×);
3. **replay**: a backlog buffered while the broker was away, timed from the connect to
   the last acknowledgement (target ≥ 20,000 samples/s).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import threading
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from edge import AgentOptions, Broker, EdgeAgent, EdgeReading, SampleBuffer
from edge.buffer import Batch, encode_counters
from edge.mqtt import Broker as MqttBroker
from edge.wire import telemetry_payload
from runhours.services import LocalServices, free_port
from wire import (
    IngestState,
    MachineRef,
    Sample,
    encode_ingest_state,
    encode_sample,
    from_epoch_ms,
    ingest_state_topic,
)

SITE = "bench"
T0 = 1_772_409_600_000


def readings(start: int, n: int) -> list[EdgeReading]:
    return [
        EdgeReading(
            Sample(
                ts=from_epoch_ms(T0 + i * 1000),
                state="running",
                values={
                    "vibration_mm_s": 1.5 + (i % 97) / 100,
                    "bearing_temp_c": 40 + (i % 41) / 10,
                    "spindle_current_a": 11 + (i % 13) / 10,
                    "spindle_speed_rpm": 8000.0,
                },
            ),
            {"run_seconds_total": 3600.0 + i},
        )
        for i in range(start, start + n)
    ]


class Ingest:
    """A subscriber standing in for the ingest: announced online, takes every message."""

    def __init__(self, url: str) -> None:
        host, port = url.removeprefix("mqtt://").split(":")
        self.count = 0
        self.topic = ingest_state_topic(f"bench-{uuid.uuid4().hex[:6]}")
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
        subscribed = threading.Event()
        self.client.on_subscribe = lambda *args: subscribed.set()
        self.client.on_message = self._on_message
        self.client.connect(host, int(port))
        self.client.loop_start()
        self.client.subscribe(f"runhours/v1/{SITE}/+/+/telemetry", qos=1)
        assert subscribed.wait(10)
        state = IngestState(online=True, ts=datetime.now(UTC), site=SITE)
        self.client.publish(
            self.topic, encode_ingest_state(state), 1, retain=True
        ).wait_for_publish()

    def _on_message(self, client: object, userdata: object, message: mqtt.MQTTMessage) -> None:
        self.count += 1

    def close(self) -> None:
        self.client.publish(self.topic, b"", 1, retain=True).wait_for_publish()
        self.client.disconnect()
        self.client.loop_stop()


def bench_append(path: Path, n: int) -> float:
    with SampleBuffer(path) as buffer:
        batches = [readings(i, 100) for i in range(0, n, 100)]
        t0 = time.perf_counter()
        for batch in batches:
            buffer.append(batch)
        return n / (time.perf_counter() - t0)


async def _through_agent(broker: Broker, path: Path, n: int, ref: MachineRef) -> float:
    with SampleBuffer(path) as buffer:
        agent = EdgeAgent(ref, buffer, broker, AgentOptions(publish_interval=0.05))
        run = asyncio.create_task(agent.run())
        assert await agent.wait_connected(10)
        batches = [readings(i, 100) for i in range(0, n, 100)]
        t0 = time.perf_counter()
        for batch in batches:
            await agent.wait_buffered_below(5000)  # a live source, not a backlog
            agent.submit(batch)
        assert await agent.drain(300)
        took = time.perf_counter() - t0
        agent.stop()
        await run
        return n / took


async def _without_buffer(broker: Broker, n: int, ref: MachineRef) -> float:
    """The same work without a buffer: encode each sample, assemble 500-sample messages in
    memory, publish them with 8 in flight (what the agent does, minus SQLite)."""
    topic = f"runhours/v1/{ref.site}/{ref.line}/{ref.machine}/telemetry"
    window = asyncio.Semaphore(8)
    batches = [readings(i, 100) for i in range(0, n, 100)]
    async with broker.client(f"bench-raw-{uuid.uuid4().hex[:6]}") as client:

        async def send(payload: bytes) -> None:
            async with window:
                await client.publish(topic, payload, qos=1, require_subscriber=True)

        t0 = time.perf_counter()
        bodies: list[bytes] = []
        counters: bytes | None = None
        sends = []
        seq = 0
        for batch in batches:
            for reading in batch:
                bodies.append(encode_sample(reading.sample))
                counters = encode_counters(reading.counters)
            if len(bodies) >= 500:
                message = Batch(0, 0, bodies, counters, 0, seq, seq * 500)
                payload = telemetry_payload(ref.machine, message, historical=False)
                sends.append(asyncio.create_task(send(payload)))
                bodies, seq = [], seq + 1
        await asyncio.gather(*sends)
        return n / (time.perf_counter() - t0)


async def _replay(broker: Broker, path: Path, n: int, ref: MachineRef) -> float:
    with SampleBuffer(path) as buffer:
        for i in range(0, n, 1000):  # buffered while the broker was away
            buffer.append(readings(i, 1000))
        agent = EdgeAgent(ref, buffer, broker)
        t0 = time.perf_counter()
        run = asyncio.create_task(agent.run())
        assert await agent.drain(600)
        took = time.perf_counter() - t0
        agent.stop()
        await run
        return n / took


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.edge", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--backlog", type=int, default=1_000_000, help="samples to replay")
    parser.add_argument("--live", type=int, default=200_000, help="samples on the live path")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="runhours-bench-") as tmp_name:
        tmp = Path(tmp_name)
        services = LocalServices(tmp / "services", mqtt_port=free_port(), influx_port=free_port())
        services.mosquitto.start(timeout=30)
        ingest = Ingest(services.mqtt_url)
        try:
            broker = MqttBroker.from_url(services.mqtt_url)
            append = bench_append(tmp / "append.sqlite3", args.live)
            print(f"  append to the buffer: {append:>10,.0f} samples/s", flush=True)
            ref = MachineRef(SITE, "line-a", "m-live")
            live = asyncio.run(_through_agent(broker, tmp / "live.sqlite3", args.live, ref))
            raw = asyncio.run(
                _without_buffer(broker, args.live, MachineRef(SITE, "line-a", "m-raw"))
            )
            print(
                f"  live path: {live:>10,.0f} samples/s through the agent and its buffer, "
                f"{raw:,.0f} without a buffer: {raw / live:.2f}× slower with it (target ≤ 2)",
                flush=True,
            )
            ref = MachineRef(SITE, "line-a", "m-replay")
            replay = asyncio.run(_replay(broker, tmp / "replay.sqlite3", args.backlog, ref))
            print(
                f"  replay of a {args.backlog:,}-sample backlog: {replay:,.0f} samples/s "
                "(target ≥ 20,000)"
            )
        finally:
            ingest.close()
            services.mosquitto.stop()
    return 0 if replay >= 20_000 and raw / live <= 2 else 1


if __name__ == "__main__":
    sys.exit(main())
