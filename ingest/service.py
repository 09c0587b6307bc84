"""The ingest service: MQTT in, InfluxDB out, an ack only once the points are stored.

Three threads:

- paho's network thread receives messages and decodes each one (``decode_message``)
  into line protocol, or into the reason it is invalid, and queues it;
- the writer thread batches queued messages (by points and by time), writes them
  through ``InfluxWriter`` (retries, bisect on 400), writes the ``ingest_touched``
  markers, then acknowledges them; it publishes dead letters and acknowledges the
  original only after the dead letter's PUBACK;
- optionally prometheus-client's ``/metrics`` server.

At-least-once: a message is acknowledged only after its points were written, the
session is persistent (``clean_start=False`` + Session Expiry Interval) so what is
published while we are away waits on the broker, and the MQTT 5 Receive Maximum
bounds how many unacknowledged messages we hold. Redelivery is harmless: rewriting a
point with the same measurement, tag set and timestamp overwrites it.

An ack is sent only on the connection the message came on: after a reconnect, packet
ids are reused, so a late PUBACK could acknowledge a different message. Such acks are
dropped; the broker redelivers those messages and we rewrite them (idempotent).
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime
from types import TracebackType
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.reasoncodes import ReasonCode

from contract import MachineRef, deadletter_topic
from ingest.config import IngestSettings
from ingest.deadletter import deadletter_payload
from ingest.decode import STATUS_LEAF, Decoded, decode_message
from ingest.metrics import IngestMetrics, IngestStats
from ingest.mqtt import connect_properties, make_client, subscriptions
from ingest.points import MachineHour, touched_markers
from ingest.writer import InfluxWriter, WriteAbandoned
from store import InfluxClient, InfluxError, InfluxWriteRejected, Point, encode_points
from store.schema import (
    FIELD_BATCH_POINTS,
    FIELD_MESSAGES_INVALID,
    FIELD_MESSAGES_RECEIVED,
    FIELD_POINTS_WRITTEN,
    FIELD_QUEUE_DEPTH,
    FIELD_WRITE_LATENCY_MS,
    INGEST_STATS,
    TAG_WORKER,
)

log = logging.getLogger(__name__)


class IngestError(RuntimeError):
    """The ingest could not start, or stopped because of an unexpected failure."""


@dataclass(frozen=True)
class Delivery:
    """One received message on its way to InfluxDB and back to the broker as an ack."""

    topic: str
    payload: bytes
    mid: int
    qos: int
    generation: int  # which connection it came on
    received_at: datetime
    decoded: Decoded


def _lines(delivery: Delivery) -> bytes:
    return delivery.decoded.lines


class IngestService:
    """One ingest worker, in-process: ``start()``, ``wait_ready()``, ``stop()``.

    >>> with IngestService(load_settings(IngestSettings, path)) as ingest:  # doctest: +SKIP
    ...     ingest.wait_idle(timeout=30)
    ...     print(ingest.stats.points_written)
    """

    def __init__(self, settings: IngestSettings) -> None:
        self.settings = settings
        self.options = settings.ingest
        self.metrics = IngestMetrics()
        self.metrics_port: int | None = None
        self._influx = InfluxClient.from_settings(settings)
        self._abandon = threading.Event()  # shutdown deadline passed: stop retrying
        self._writer = InfluxWriter(
            self._influx,
            retry_initial=self.options.retry_initial,
            retry_max=self.options.retry_max,
            abandon=self._abandon,
            on_retry=self.metrics.retried,
            on_write=self.metrics.write_took,
        )
        self._queue: queue.SimpleQueue[Delivery] = queue.SimpleQueue()
        self._published: queue.SimpleQueue[tuple[int, bool]] = queue.SimpleQueue()
        self._conn_lock = threading.Lock()  # generation vs. acks (see module docstring)
        self._generation = 0
        # Per machine, the time of the last status point stored (network thread only).
        self._status_floor: dict[MachineRef, int] = {}
        self._subscribe_mid: int | None = None
        self._ready = threading.Event()
        self._closing = threading.Event()  # stop taking messages, flush, then exit
        self._last_received = time.monotonic()
        self._failure: BaseException | None = None
        self._started = False
        self._stopped = False
        self._client = make_client(settings)
        self._client.on_connect = self._on_connect
        self._client.on_disconnect = self._on_disconnect
        self._client.on_subscribe = self._on_subscribe
        self._client.on_message = self._on_message
        self._client.on_publish = self._on_publish
        self._thread = threading.Thread(
            target=self._run_writer, name=f"ingest-writer[{self.options.client_id}]", daemon=True
        )

    # -- lifecycle -----------------------------------------------------------------

    def start(self) -> None:
        """Create the database if missing, start the threads and connect (in the background:
        an unreachable broker is retried). See ``wait_ready``."""
        if self._started:
            raise IngestError("this IngestService was already started; create a new one")
        self._started = True
        try:
            self._influx.ensure_database()
        except InfluxError as exc:  # the writer creates it later (404 → create → retry)
            log.warning("cannot create database %r yet: %s", self.settings.influx_db, exc)
        if self.options.metrics_port:
            self.metrics_port = self.metrics.serve(
                self.options.metrics_port, self.options.metrics_addr
            )
            log.info(
                "metrics on http://%s:%d/metrics", self.options.metrics_addr, self.metrics_port
            )
        self._thread.start()
        url = self.settings.mqtt
        self._client.connect_async(
            url.host,
            url.port,
            keepalive=self.options.keepalive,
            clean_start=False,
            properties=connect_properties(self.options.max_inflight, self.options.session_expiry),
        )
        self._client.loop_start()

    def wait_ready(self, timeout: float | None = None) -> bool:
        """Wait until connected and subscribed; False on timeout."""
        return self._ready.wait(timeout)

    def stop(self, timeout: float | None = None) -> IngestStats:
        """Graceful shutdown: stop taking messages, flush what we hold, ack, disconnect.

        Gives up flushing after ``timeout`` (default ``shutdown_timeout``); what is left
        unacknowledged is redelivered by the broker on the next start.
        """
        if not self._started or self._stopped:
            return self.stats
        self._stopped = True
        self._closing.set()
        if self._thread.is_alive():
            self._thread.join(self.options.shutdown_timeout if timeout is None else timeout)
            if self._thread.is_alive():
                log.warning("shutdown timeout: leaving unwritten messages to the broker")
                self._abandon.set()
                self._thread.join(30)
        self._client.disconnect()
        self._client.loop_stop()
        self.metrics.close()
        self._influx.close()
        return self.stats

    def __enter__(self) -> IngestService:
        self.start()
        if not self.wait_ready(30):
            self.stop(timeout=0)
            raise IngestError(f"not connected to the MQTT broker at {self.settings.mqtt_url}")
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def stats(self) -> IngestStats:
        return self.metrics.snapshot()

    @property
    def failure(self) -> BaseException | None:
        """The unexpected error that stopped the writer, if any (its messages stay unacked)."""
        return self._failure

    @property
    def running(self) -> bool:
        return self._thread.is_alive()

    def wait_idle(self, timeout: float, quiet: float = 0.3) -> bool:
        """Wait until every received message is written and acknowledged and nothing new
        arrived for ``quiet`` seconds; False on timeout."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.stats.held == 0 and time.monotonic() - self._last_received >= quiet:
                return True
            time.sleep(0.05)
        return False

    # -- MQTT callbacks (paho's network thread) -------------------------------------

    def _on_connect(
        self,
        client: mqtt.Client,
        userdata: Any,
        flags: mqtt.ConnectFlags,
        reason_code: ReasonCode,
        properties: Any,
    ) -> None:
        if reason_code.is_failure:
            log.error("broker refused the connection: %s", reason_code)
            return
        with self._conn_lock:
            self._generation += 1
        self.metrics.connected()
        filters = subscriptions(self.options.site, self.options.share_group)
        log.info(
            "connected to %s (session %s); subscribing to %s",
            self.settings.mqtt_url,
            "resumed" if flags.session_present else "new",
            ", ".join(f for f, _ in filters),
        )
        # Always (re)subscribe: harmless on a resumed session, needed on a new one.
        _, self._subscribe_mid = client.subscribe(filters)

    def _on_disconnect(
        self,
        client: mqtt.Client,
        userdata: Any,
        flags: mqtt.DisconnectFlags,
        reason_code: ReasonCode,
        properties: Any,
    ) -> None:
        # paho calls this before reconnect() clears its outgoing packets, so no ack
        # checked against the old generation can reach the next connection.
        with self._conn_lock:
            self._generation += 1
        self._ready.clear()
        self.metrics.subscribed(False)
        if not self._closing.is_set():
            log.warning("disconnected from the broker (%s); reconnecting", reason_code)

    def _on_subscribe(
        self,
        client: mqtt.Client,
        userdata: Any,
        mid: int,
        reason_codes: list[ReasonCode],
        properties: Any,
    ) -> None:
        if mid != self._subscribe_mid:
            return
        refused = [str(code) for code in reason_codes if code.is_failure]
        if refused:
            log.error("broker refused the subscription: %s", ", ".join(refused))
            return
        self._ready.set()
        self.metrics.subscribed(True)

    def _on_message(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        if self._closing.is_set():
            return  # not acked: the broker redelivers it to our next session
        self._last_received = time.monotonic()
        if message.qos == 0 and self.stats.held >= self.options.max_inflight:
            # Receive Maximum bounds QoS 1 only; QoS 0 (against the contract, e.g. a bare
            # `mosquitto_pub`) has no redelivery to wait for, so memory stays flat by
            # dropping it, counted and logged.
            dropped = self.metrics.qos0_dropped()
            if dropped == 1 or dropped % 1000 == 0:
                log.warning(
                    "dropped %d QoS 0 message(s) while holding %d: publish telemetry with "
                    "QoS 1 (the v1 contract) to have it delivered once InfluxDB keeps up",
                    dropped,
                    self.options.max_inflight,
                )
            return
        topic, payload = message.topic, bytes(message.payload)
        # decode_message never raises; paho would end its network thread if it did.
        decoded = decode_message(topic, payload, time.time_ns() // 1_000_000, self._status_floor)
        self.metrics.received("status" if topic.endswith(STATUS_LEAF) else "telemetry")
        self._queue.put(
            Delivery(
                topic,
                payload,
                message.mid,
                message.qos,
                self._generation,
                datetime.now(UTC),
                decoded,
            )
        )

    def _on_publish(
        self,
        client: mqtt.Client,
        userdata: Any,
        mid: int,
        reason_code: ReasonCode,
        properties: Any,
    ) -> None:
        self._published.put((mid, not reason_code.is_failure))

    # -- writer thread ------------------------------------------------------------

    def _run_writer(self) -> None:
        pending: dict[int, Delivery] = {}  # dead letter's mid → the original message
        next_stats = time.monotonic() + self.options.stats_interval
        try:
            while True:
                batch = self._collect()
                if batch:
                    self._handle(batch, pending)
                self._settle_deadletters(pending)
                if self.options.stats_interval and time.monotonic() >= next_stats:
                    self._write_stats()
                    next_stats = time.monotonic() + self.options.stats_interval
                if self._closing.is_set() and self._queue.empty() and not pending:
                    return
                if self._abandon.is_set():
                    self._abandon_all()
                    return
        except WriteAbandoned:
            self._abandon_all()
        except BaseException as exc:
            # A bug must not be silent: stop, leave everything unacknowledged (the broker
            # redelivers it), and let `runhours ingest` exit non-zero.
            log.exception("ingest writer failed; stopping (unacknowledged messages are kept)")
            self._failure = exc
            self._closing.set()

    def _collect(self) -> list[Delivery]:
        """Up to ``batch_points`` points, waiting at most ``batch_interval`` after the first."""
        try:
            first = self._queue.get(timeout=0.1)
        except queue.Empty:
            return []
        batch, points = [first], first.decoded.points
        deadline = time.monotonic() + self.options.batch_interval
        while points < self.options.batch_points:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            try:
                item = self._queue.get(timeout=remaining)
            except queue.Empty:
                break
            batch.append(item)
            points += item.decoded.points
        return batch

    def _handle(self, batch: list[Delivery], pending: dict[int, Delivery]) -> None:
        good = [d for d in batch if d.decoded.valid]
        for delivery in batch:
            if not delivery.decoded.valid:
                self._deadletter(delivery, delivery.decoded.error or "invalid", pending)
        rejected = self._writer.write_isolating(good, _lines)
        refused = {id(d) for d, _ in rejected}
        for delivery, reason in rejected:
            self._deadletter(delivery, f"InfluxDB rejected the points: {reason}", pending)
        written = [d for d in good if id(d) not in refused]
        points = sum(d.decoded.points for d in written)
        if points:
            self.metrics.batch_written(points)
        # Markers for every message we wrote, rejected ones included: InfluxDB 1.x
        # stored their good points too, and a needless recompute costs little.
        touched: Counter[MachineHour] = Counter()
        for delivery in good:
            touched.update(delivery.decoded.touched)
        if touched:
            try:  # stamped when the write lands, so a long retry cannot hide markers
                self._writer.write(
                    lambda: encode_points(touched_markers(touched, time.time_ns())),
                    precision="ns",
                )
            except InfluxWriteRejected as exc:
                log.error("InfluxDB rejected the ingest_touched markers: %s", exc)
        for delivery in written:
            self._ack(delivery)

    def _deadletter(self, delivery: Delivery, reason: str, pending: dict[int, Delivery]) -> None:
        log.warning("dead letter for %s: %s", delivery.topic, reason)
        self.metrics.invalid()
        body = deadletter_payload(delivery.topic, delivery.payload, reason, delivery.received_at)
        # Queued by paho even while disconnected, and sent once connected again.
        info = self._client.publish(deadletter_topic(delivery.topic), body, qos=1)
        pending[info.mid] = delivery

    def _settle_deadletters(self, pending: dict[int, Delivery]) -> None:
        while True:
            try:
                mid, accepted = self._published.get_nowait()
            except queue.Empty:
                return
            delivery = pending.pop(mid, None)
            if delivery is None:
                continue
            if not accepted:
                # Holding it would block one in-flight slot forever; the log keeps it.
                log.error(
                    "broker refused the dead letter for %s; acknowledging it anyway: %r",
                    delivery.topic,
                    delivery.payload[:1000],
                )
            self._ack(delivery)

    def _ack(self, delivery: Delivery) -> None:
        with self._conn_lock:
            current = delivery.generation == self._generation
            if current and delivery.qos > 0:
                self._client.ack(delivery.mid, delivery.qos)
        self.metrics.settled(acked=current)

    def _abandon_all(self) -> None:
        held = self.stats.held
        log.warning("left %d message(s) unacknowledged; the broker redelivers them", held)
        self.metrics.abandoned(held)

    def _write_stats(self) -> None:
        stats = self.stats
        latency_ms, batch_points = self.metrics.interval_means()
        point = Point(
            INGEST_STATS,
            {TAG_WORKER: self.options.client_id},
            {
                FIELD_MESSAGES_RECEIVED: float(stats.messages_received),
                FIELD_MESSAGES_INVALID: float(stats.messages_invalid),
                FIELD_POINTS_WRITTEN: float(stats.points_written),
                FIELD_WRITE_LATENCY_MS: latency_ms,
                FIELD_BATCH_POINTS: batch_points,
                FIELD_QUEUE_DEPTH: float(stats.held),
            },
            time.time_ns() // 1_000_000,
        )
        try:
            self._influx.write_lines(encode_points([point]))
        except InfluxError as exc:  # health points are best effort, never retried
            log.debug("ingest_stats point not written: %s", exc)
