"""The ingest service: MQTT in, InfluxDB out, an ack only once the points are stored.

Three threads:

- paho's network thread receives messages and decodes each one (``decode_message``)
  into line protocol, or into the reason it is invalid, and queues it;
- the writer thread batches queued messages (by points and by time), writes them
  through ``InfluxWriter`` (retries, bisect on 400), stores dead letters durably
  (``DeadLetterStore``), follows each machine's ``seq`` (``SequenceTracker``: gaps are
  written to ``ingest_gaps`` and logged with their likely cause), writes the
  ``ingest_touched`` markers and where each sequence stands, and only then acknowledges;
- optionally prometheus-client's ``/metrics`` server.

Presence: once subscribed, the worker publishes a retained ``IngestState(online=True)`` on
``runhours/v1/ingest/{client_id}/state``; its MQTT will and a graceful stop say
``online: false``. Edge agents hold their telemetry while no worker is online, so nothing
is published into a broker with no subscriber.

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

from common.errors import RunhoursError
from ingest.config import IngestSettings
from ingest.deadletter import DeadLetter, DeadLetterStore, deadletter_id, deadletter_payload
from ingest.decode import STATUS_LEAF, Decoded, decode_message
from ingest.metrics import IngestMetrics, IngestStats
from ingest.mqtt import SYS_TOPICS, connect_properties, make_client, subscriptions
from ingest.points import (
    MachineHour,
    gap_copy,
    gap_point,
    recovery_point,
    sequence_point,
    touched_markers,
)
from ingest.sequence import Gap, Hole, SequenceTracker, parse_missing
from ingest.sparkplug import SparkplugDecoder
from ingest.sparkplug_host import SparkplugHost
from ingest.writer import InfluxWriter, WriteAbandoned
from store import InfluxClient, InfluxError, InfluxWriteRejected, Point, encode_points
from store.influxql import quote_string
from store.lineprotocol import ms_lines_as_ns
from store.schema import (
    FIELD_BATCH_POINTS,
    FIELD_BROKER_DROPPED,
    FIELD_MESSAGES_INVALID,
    FIELD_MESSAGES_RECEIVED,
    FIELD_POINTS_WRITTEN,
    FIELD_QUEUE_DEPTH,
    FIELD_WRITE_LATENCY_MS,
    INGEST_GAPS,
    INGEST_SEQUENCE,
    INGEST_STATS,
    TAG_SITE,
    TAG_WORKER,
    ingest_state_database,
)
from wire import (
    IngestState,
    MachineRef,
    deadletter_topic,
    encode_ingest_state,
    ingest_state_topic,
)

log = logging.getLogger(__name__)

SPARKPLUG_PREFIX = "spBv1.0/"
GAP_RESTORE_DAYS = 30  # open gaps this recent are re-opened after a restart
CAUSE_WINDOW_S = 120.0  # a broker drop or restart this recent explains a new gap
GAP_LOG_INTERVAL_S = 10.0  # at most one gap warning per interval; the rest are summed


class IngestError(RunhoursError, RuntimeError):
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
        # Where the ingest keeps the copy of its bookkeeping it reads back at start: its
        # account needs no READ on the telemetry (store/schema.py, docs/security.md).
        self._state_db = self._influx.sibling(ingest_state_database(settings.influx_db))
        self._abandon = threading.Event()  # shutdown deadline passed: stop retrying
        self._writer = InfluxWriter(
            self._influx,
            retry_initial=self.options.retry_initial,
            retry_max=self.options.retry_max,
            abandon=self._abandon,
            on_retry=self.metrics.retried,
            on_write=self.metrics.write_took,
            on_outage=self._database_outage,
            outage_after=self.options.hold_edges_after,
        )
        self._queue: queue.SimpleQueue[Delivery] = queue.SimpleQueue()
        self._conn_lock = threading.Lock()  # generation vs. acks (see module docstring)
        self._generation = 0
        # Per machine, the time of the last status point stored (network thread only).
        self._status_floor: dict[MachineRef, int] = {}
        self._subscribe_mid: int | None = None
        self._deadletters = DeadLetterStore(
            settings.data_dir / "deadletters", self.options.client_id
        )
        # Gaps need every message of a machine: not with a shared subscription (each worker
        # sees a share), where docs/reliability.md says how to pin machines to workers.
        self._tracker = None if self.options.share_group else SequenceTracker(time.time_ns)
        self._restored = self._tracker is None
        self._gap_log_at = -GAP_LOG_INTERVAL_S
        self._gaps_unlogged: list[tuple[Gap, str]] = []
        # $SYS: the broker's drop counter and uptime (network thread writes, writer reads).
        self._broker_dropped: int | None = None
        self._dropped_rose_at = -CAUSE_WINDOW_S * 2
        self._broker_uptime: int | None = None
        self._restarted_at = -CAUSE_WINDOW_S * 2
        self._connected_once = False
        self._state_topic = ingest_state_topic(self.options.client_id)
        self._state_ts = datetime.now(UTC)
        self._ready = threading.Event()
        self._closing = threading.Event()  # stop taking messages, flush, then exit
        self._last_received = time.monotonic()
        self._failure: BaseException | None = None
        self._started = False
        self._stopped = False
        # Sparkplug B (optional): births/aliases/seq per edge node, and the primary host STATE.
        spb = self.options.sparkplug
        self._sparkplug = SparkplugDecoder(spb) if spb.enabled else None
        self._sparkplug_host = SparkplugHost(settings) if spb.enabled else None
        self._client = make_client(settings)
        self._client.on_connect = self._on_connect
        self._client.on_disconnect = self._on_disconnect
        self._client.on_subscribe = self._on_subscribe
        self._client.on_message = self._on_message
        self._set_will()
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
        for client in (self._influx, self._state_db):
            try:
                client.ensure_database()
            except InfluxError as exc:  # the writer creates it later (404 → create → retry)
                log.warning("cannot create database %r yet: %s", client.database, exc)
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
        self._announce(online=False)  # edges hold their telemetry from now on
        if self._thread.is_alive():
            self._thread.join(self.options.shutdown_timeout if timeout is None else timeout)
            if self._thread.is_alive():
                log.warning("shutdown timeout: leaving unwritten messages to the broker")
                self._abandon.set()
                self._thread.join(30)
        self._client.disconnect()
        self._client.loop_stop()
        if self._sparkplug_host is not None:
            self._sparkplug_host.close()
        self.metrics.close()
        self._influx.close()
        self._state_db.close()
        self._deadletters.close()
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
        if self._connected_once and not flags.session_present:
            self._restarted_at = time.monotonic()
            log.warning(
                "the broker did not keep this worker's session (restarted without its "
                "persistence file, or the session expired): what it queued for us is lost; "
                "sequence gaps will show it"
            )
        self._connected_once = True
        spb = self.options.sparkplug
        filters = subscriptions(
            self.options.site, self.options.share_group, spb.group if spb.enabled else None
        )
        log.info(
            "connected to %s (session %s); subscribing to %s",
            self.settings.mqtt_url,
            "resumed" if flags.session_present else "new",
            ", ".join(f for f, _ in filters),
        )
        # Always (re)subscribe: harmless on a resumed session, needed on a new one.
        _, self._subscribe_mid = client.subscribe(filters)
        # The broker's own drop counter and uptime, when its ACL lets us read $SYS.
        client.subscribe([(topic, 0) for topic in SYS_TOPICS])

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
        self._set_will()  # the next connection's will, dated like its online state
        if self._sparkplug_host is not None:  # we take nothing now: nodes must hold
            self._sparkplug_host.announce(False)
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
        if not self._closing.is_set() and not self._writer.in_outage:
            self._announce(online=True)

    def _set_will(self) -> None:
        self._state_ts = datetime.now(UTC)
        self._client.will_set(self._state_topic, self._state(False), qos=1, retain=True)

    def _state(self, online: bool) -> bytes:
        state = IngestState(online=online, ts=self._state_ts, site=self.options.site)
        return encode_ingest_state(state)

    def _announce(self, *, online: bool) -> None:
        """Publish this worker's retained state; going offline waits (briefly) for the
        broker to have it, so edges hold their telemetry before we stop taking it."""
        info = self._client.publish(self._state_topic, self._state(online), qos=1, retain=True)
        if self._sparkplug_host is not None:
            self._sparkplug_host.announce(online)
        if not online and self._client.is_connected():
            try:
                info.wait_for_publish(timeout=5)
            except (ValueError, RuntimeError) as exc:
                log.warning("could not announce going offline: %s", exc)

    def _database_outage(self, down: bool) -> None:
        """Writes have failed for ``hold_edges_after`` seconds (or work again): ask the edge
        agents to hold their telemetry in their own buffers (days) rather than the broker's
        queue (hours), by announcing this worker offline until InfluxDB takes writes."""
        if self._closing.is_set():
            return
        if down:
            log.warning(
                "InfluxDB has failed for %.0f s: announcing this worker offline, so edge "
                "agents hold their telemetry until it works again",
                self.options.hold_edges_after,
            )
        else:
            log.warning("InfluxDB works again: announcing this worker online")
        self._announce(online=not down)

    def _on_sys(self, topic: str, payload: bytes) -> None:
        """``$SYS`` values: the broker's drop counter and uptime (a restart resets it)."""
        try:
            value = int(payload.split()[0])
        except (ValueError, IndexError):
            return
        now = time.monotonic()
        if topic.endswith("/dropped"):
            if self._broker_dropped is not None and value > self._broker_dropped:
                self._dropped_rose_at = now
            self._broker_dropped = value
            self.metrics.broker_dropped(value)
        else:
            if self._broker_uptime is not None and value < self._broker_uptime:
                self._restarted_at = now
            self._broker_uptime = value

    def _on_message(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        if message.topic.startswith("$SYS/"):
            self._on_sys(message.topic, bytes(message.payload))
            return
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
        if self._sparkplug is not None and topic.startswith(SPARKPLUG_PREFIX):
            decoded = self._decode_sparkplug(client, topic, payload)
        else:
            # decode_message never raises; paho would end its network thread if it did.
            decoded = decode_message(
                topic,
                payload,
                time.time_ns() // 1_000_000,
                self._status_floor,
                self.options.max_message_bytes,
            )
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

    def _decode_sparkplug(self, client: mqtt.Client, topic: str, payload: bytes) -> Decoded:
        """A Sparkplug B message (network thread, arrival order: births before their data);
        a rebirth request it calls for is published at once."""
        assert self._sparkplug is not None
        self.metrics.received("sparkplug")
        if len(payload) > self.options.max_message_bytes:
            return Decoded(
                error=f"payload: {len(payload)} bytes, more than ingest.max_message_bytes"
            )
        decoded, command = self._sparkplug.decode(
            topic, payload, time.time_ns() // 1_000_000, self._status_floor
        )
        if command is not None:
            client.publish(*command, qos=0)
        return decoded

    # -- writer thread ------------------------------------------------------------

    def _run_writer(self) -> None:
        next_stats = time.monotonic() + self.options.stats_interval
        try:
            while True:
                batch = self._collect()
                if batch:
                    self._handle(batch)
                if self.options.stats_interval and time.monotonic() >= next_stats:
                    self._write_stats()
                    next_stats = time.monotonic() + self.options.stats_interval
                self._log_gaps()
                if self._closing.is_set() and self._queue.empty():
                    self._log_gaps(force=True)
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

    def _handle(self, batch: list[Delivery]) -> None:
        """Follow the sequences, write the ingest's state copy, then the points and the
        bookkeeping in one request (on a 400: isolate the bad messages, then the
        bookkeeping alone), store the dead letters, then acknowledge.

        The state copy goes first: if the process dies between the two writes, the restart
        resumes from it, treats the redelivered messages as duplicates (their points are
        written anyway) and rewrites the gaps the main database may lack (``_restore_sequences``).
        The other order would detect those gaps again, under new keys: counted twice."""
        if not self._restored:
            self._writer.call(self._restore_sequences, "reading where the sequences stand")
        refused = {id(d): d.decoded.error for d in batch if not d.decoded.valid}
        good = [d for d in batch if d.decoded.valid]
        gap_points, moved = self._follow_sequences(batch)
        # Markers for every message we wrote, rejected ones included: InfluxDB 1.x
        # stored their good points too, and a needless recompute costs little.
        touched: Counter[MachineHour] = Counter()
        for delivery in good:
            touched.update(delivery.decoded.touched)

        def bookkeeping() -> bytes:  # stamped when the write lands: a retry cannot hide it
            now_ns = time.time_ns()
            markers = touched_markers(touched, now_ns)
            return encode_points(markers + self._state_points(gap_points, moved, now_ns))

        if self._tracker is not None:
            try:
                self._writer.write(
                    lambda: encode_points(self._state_points(gap_points, moved, time.time_ns())),
                    precision="ns",
                    to=self._state_db,
                )
            except InfluxWriteRejected as exc:
                log.error("InfluxDB rejected the ingest's state points: %s", exc)

        lines = b"\n".join(d.decoded.lines for d in good if d.decoded.lines)
        try:
            self._writer.write(
                lambda: b"\n".join(part for part in (ms_lines_as_ns(lines), bookkeeping()) if part),
                precision="ns",
            )
        except InfluxWriteRejected:
            for delivery, reason in self._writer.write_isolating(good, _lines):
                refused[id(delivery)] = f"InfluxDB rejected the points: {reason}"
            try:
                self._writer.write(bookkeeping, precision="ns")
            except InfluxWriteRejected as exc:
                log.error("InfluxDB rejected the ingest bookkeeping points: %s", exc)
        points = sum(d.decoded.points for d in good if id(d) not in refused)
        if points:
            self.metrics.batch_written(points)
        self._store_deadletters([d for d in batch if id(d) in refused], refused)
        for delivery in batch:
            self._ack(delivery)

    def _state_points(
        self, gap_points: list[Point], moved: set[MachineRef], now_ns: int
    ) -> list[Point]:
        """The gaps found and where the moved machines' sequences stand."""
        points = list(gap_points)
        if self._tracker is not None:
            for ref in sorted(moved):
                high = self._tracker.high(ref)
                if high is not None:
                    points.append(sequence_point(ref, *high, self.options.client_id, now_ns))
        return points

    def _store_deadletters(
        self, deliveries: list[Delivery], reasons: dict[int, str | None]
    ) -> None:
        """Durably store, then publish, the dead letters of a batch (before any ack)."""
        letters = [
            DeadLetter(
                deadletter_id(d.topic, d.payload),
                d.topic,
                d.payload,
                reasons[id(d)] or "invalid",
                d.received_at,
                self.options.client_id,
            )
            for d in deliveries
        ]
        if not letters:
            return
        self._deadletters.append(
            letters
        )  # raises (stopping the worker, nothing acked) if it cannot
        self.metrics.deadletters_stored(len(letters))
        for letter in letters:
            log.warning("dead letter for %s: %s", letter.topic, letter.reason)
            self.metrics.invalid()
            # Best effort for live watchers; the store above is what keeps it. Queued by
            # paho even while disconnected.
            body = deadletter_payload(
                letter.topic, letter.payload, letter.reason, letter.received_at
            )
            self._client.publish(deadletter_topic(letter.topic), body, qos=1)

    def _follow_sequences(self, batch: list[Delivery]) -> tuple[list[Point], set[MachineRef]]:
        """Feed the batch, in arrival order, to the sequence tracker: the gap points to write
        and the machines whose sequence moved."""
        tracker = self._tracker
        points: list[Point] = []
        moved: set[MachineRef] = set()
        if tracker is None:
            return points, moved
        for delivery in batch:
            decoded = delivery.decoded
            if decoded.ref is None:
                continue
            if decoded.seq is not None and decoded.restart:
                outcome = tracker.restart(decoded.ref, decoded.seq, decoded.offset, decoded.samples)
            elif decoded.seq is not None:
                outcome = tracker.message(decoded.ref, decoded.seq, decoded.offset, decoded.samples)
            elif decoded.delivered is not None:
                found = tracker.delivered(decoded.ref, *decoded.delivered)
                if found is None:
                    continue
                outcome = found
            else:
                continue
            moved.add(decoded.ref)
            if outcome.gap is not None:
                cause = self._likely_cause()
                points.append(gap_point(outcome.gap, cause, self.options.client_id))
                self.metrics.gap(outcome.gap.messages, outcome.gap.samples)
                self._gaps_unlogged.append((outcome.gap, cause))
            elif outcome.hole is not None:
                points.append(recovery_point(outcome.hole))
                self.metrics.late(decoded.samples)
                log.info(
                    "%s: seq %d arrived late: gap %d-%d has %d message(s) recovered",
                    "/".join(decoded.ref),
                    decoded.seq,
                    outcome.hole.gap.first_seq,
                    outcome.hole.gap.last_seq,
                    outcome.hole.recovered_messages,
                )
            elif outcome.kind == "duplicate":
                self.metrics.duplicate()
            elif outcome.kind == "restart":
                self.metrics.sequence_restart()
                log.info(
                    "%s: seq restarted at %d (a new edge buffer, or a Sparkplug birth)",
                    "/".join(decoded.ref),
                    decoded.seq,
                )
        return points, moved

    def _likely_cause(self) -> str:
        now = time.monotonic()
        if now - self._dropped_rose_at <= CAUSE_WINDOW_S:
            return (
                "broker queue limit: the broker counts dropped messages "
                f"($SYS/broker/publish/messages/dropped = {self._broker_dropped}); raise "
                "max_queued_messages/max_queued_bytes (docs/deploy.md)"
            )
        if now - self._restarted_at <= CAUSE_WINDOW_S:
            return "broker restart or crash: it lost messages it had acknowledged to the edge"
        if self._broker_dropped:
            return (
                "unknown; the broker has dropped messages since it started "
                f"($SYS/broker/publish/messages/dropped = {self._broker_dropped})"
            )
        return "unknown: lost after the broker acknowledged them (queue limit or crash)"

    def _log_gaps(self, force: bool = False) -> None:
        """One warning per gap, at most one per ``GAP_LOG_INTERVAL_S``; the rest summed."""
        if not self._gaps_unlogged:
            return
        now = time.monotonic()
        if not force and now - self._gap_log_at < GAP_LOG_INTERVAL_S:
            return
        gap, cause = self._gaps_unlogged[0]
        more = self._gaps_unlogged[1:]
        samples = "?" if gap.samples is None else str(gap.samples)
        log.warning(
            "%s: %d message(s) lost in transit (seq %d-%d, %s samples); likely cause: %s%s",
            "/".join(gap.ref),
            gap.messages,
            gap.first_seq,
            gap.last_seq,
            samples,
            cause,
            f"; and {len(more)} more gap(s) of {sum(g.messages for g, _ in more)} message(s) "
            f"on {len({g.ref for g, _ in more})} machine(s) (see `runhours ingest status`)"
            if more
            else "",
        )
        self._gaps_unlogged.clear()
        self._gap_log_at = now

    def _restore_sequences(self) -> None:
        """Resume each machine's sequence from the ingest's state database
        (``ingest_sequence``, open ``ingest_gaps``), and rewrite its recent gaps into the
        main database, which may lack the last batch's (see ``_handle``; same series and
        time, so rewriting is idempotent). Raises ``InfluxError`` while InfluxDB cannot
        answer (the writer's ``call`` retries it)."""
        tracker = self._tracker
        assert tracker is not None
        site = self.options.site
        where = "" if site == "+" else f" WHERE {TAG_SITE} = {quote_string(site)}"
        also = "" if site == "+" else f" AND {TAG_SITE} = {quote_string(site)}"
        self._influx.ensure_database()
        self._state_db.ensure_database()
        rows = self._state_db.query_rows(
            f'SELECT last("seq") AS seq, last("end_offset") AS end_offset '
            f"FROM {INGEST_SEQUENCE}{where} GROUP BY site, line, machine"
        )
        gaps = self._state_db.query_rows(
            f"SELECT * FROM {INGEST_GAPS} WHERE time > now() - {GAP_RESTORE_DAYS}d{also} "
            "GROUP BY site, line, machine",
            epoch="ns",
        )
        for row in rows:
            end = int(row["end_offset"])
            ref = MachineRef(row["site"], row["line"], row["machine"])
            tracker.restore(ref, int(row["seq"]), None if end < 0 else end)
        # Writes nothing the main database does not already hold, but what the last batch
        # before a crash may have left out (see ``_handle``).
        self._influx.write_lines(encode_points(map(gap_copy, gaps)), precision="ns")
        reopened = 0
        for row in gaps:
            messages, recovered = int(row["messages"]), int(row["recovered_messages"] or 0)
            if recovered >= messages:
                continue
            ref = MachineRef(row["site"], row["line"], row["machine"])
            samples = None if row.get("samples") is None else int(row["samples"])
            first, last = int(row["first_seq"]), int(row["last_seq"])
            gap = Gap(ref, first, last, samples, int(row["time"]))
            # Gaps written before `missing` was stored, or unreadable: all of it, as then.
            try:
                missing = parse_missing(row.get("missing") or f"{first}-{last}")
            except ValueError:
                log.warning(
                    "gap %d-%d of %s: unreadable missing ranges %r; reopened whole",
                    first,
                    last,
                    "/".join(ref),
                    row.get("missing"),
                )
                missing = [(first, last)]
            tracker.restore_hole(Hole(gap, missing, recovered, int(row["recovered_samples"] or 0)))
            reopened += 1
        log.info("following %d machines' sequences (%d open gaps)", len(tracker), reopened)
        self._restored = True

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
                **(
                    {}
                    if stats.broker_dropped is None
                    else {FIELD_BROKER_DROPPED: float(stats.broker_dropped)}
                ),
            },
            time.time_ns() // 1_000_000,
        )
        try:
            self._influx.write_lines(encode_points([point]))
        except InfluxError as exc:  # health points are best effort, never retried
            log.debug("ingest_stats point not written: %s", exc)
