"""Ingest counters, kept twice: as Prometheus metrics and as an in-process snapshot.

Each service owns its ``CollectorRegistry`` (not prometheus-client's global one), so
several workers can run in one process — the tests do — and each serves its own
``/metrics`` when ``metrics_port`` is set.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

PREFIX = "runhours_ingest"


@dataclass
class IngestStats:
    """What one worker has done so far (running totals), and what it holds now."""

    messages_received: int = 0
    messages_invalid: int = 0  # dead-lettered (by validation or by InfluxDB's 400)
    messages_acked: int = 0
    acks_dropped: int = 0  # received on an earlier connection: the broker redelivers them
    points_written: int = 0  # telemetry and status points accepted by InfluxDB
    batches_written: int = 0
    write_retries: int = 0
    held: int = 0  # received, not yet acknowledged (bounded by max_inflight per connection)
    max_held: int = 0
    connects: int = 0
    qos0_dropped: int = 0  # QoS 0 messages refused while max_inflight were held (no redelivery)
    last_write_at: datetime | None = None
    deadletters_stored: int = 0  # dead letters written to the durable store
    # Sequence tracking (ingest/sequence.py): gaps opened, the messages/samples they miss,
    # the part of them that arrived late, redeliveries and restarted numberings.
    gaps: int = 0
    gap_messages: int = 0
    gap_samples: int = 0
    late_messages: int = 0
    late_samples: int = 0
    duplicates: int = 0
    sequence_restarts: int = 0
    broker_dropped: int | None = None  # $SYS/broker/publish/messages/dropped, when published


class IngestMetrics:
    """Thread-safe counters updated by the MQTT thread and the writer thread."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self._received = Counter(
            f"{PREFIX}_messages_received", "MQTT messages received", ["kind"], registry=r
        )
        self._invalid = Counter(
            f"{PREFIX}_messages_invalid", "messages sent to the dead letters", registry=r
        )
        self._acked = Counter(f"{PREFIX}_messages_acked", "messages acknowledged", registry=r)
        self._dropped = Counter(
            f"{PREFIX}_acks_dropped",
            "acks not sent because the message came on an earlier connection",
            registry=r,
        )
        self._qos0_dropped = Counter(
            f"{PREFIX}_qos0_dropped",
            "QoS 0 messages dropped while the worker held max_inflight messages",
            registry=r,
        )
        self._points = Counter(f"{PREFIX}_points_written", "points written to InfluxDB", registry=r)
        self._retries = Counter(f"{PREFIX}_write_retries", "failed writes retried", registry=r)
        self._latency = Histogram(
            f"{PREFIX}_write_latency_seconds",
            "duration of successful InfluxDB writes",
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
            registry=r,
        )
        self._batch = Histogram(
            f"{PREFIX}_batch_points",
            "points per telemetry batch",
            buckets=(1, 10, 50, 100, 500, 1000, 2500, 5000, 10000, 25000, 50000),
            registry=r,
        )
        self._depth = Gauge(
            f"{PREFIX}_queue_depth", "messages received and not yet acknowledged", registry=r
        )
        self._last = Gauge(
            f"{PREFIX}_last_write_timestamp_seconds",
            "Unix time of the last successful write",
            registry=r,
        )
        self._gaps = Counter(
            f"{PREFIX}_sequence_gaps",
            "gaps in a machine's seq: messages acknowledged to the edge and never received",
            registry=r,
        )
        self._gap_messages = Counter(
            f"{PREFIX}_sequence_gap_messages", "messages missing in sequence gaps", registry=r
        )
        self._gap_samples = Counter(
            f"{PREFIX}_sequence_gap_samples",
            "samples missing in sequence gaps (when the edge sends offsets)",
            registry=r,
        )
        self._late = Counter(
            f"{PREFIX}_sequence_late_messages",
            "messages that arrived after their gap was reported (recovered)",
            registry=r,
        )
        self._duplicates = Counter(
            f"{PREFIX}_sequence_duplicates",
            "messages received again (redeliveries, resends), stored as the same points",
            registry=r,
        )
        self._deadletters = Counter(
            f"{PREFIX}_deadletters_stored", "dead letters written to the durable store", registry=r
        )
        self._broker_dropped = Gauge(
            f"{PREFIX}_broker_dropped_messages",
            "the broker's own count of dropped messages ($SYS/broker/publish/messages/dropped)",
            registry=r,
        )
        self._subscribed = Gauge(
            f"{PREFIX}_subscribed",
            "1 while connected and subscribed (the health check waits for it)",
            registry=r,
        )
        self._received_by_kind: dict[str, Any] = {}
        self._lock = threading.Lock()
        self._stats = IngestStats()
        # Since the last ingest_stats point: sums for the interval's means.
        self._latency_sum = 0.0
        self._latency_n = 0
        self._batch_sum = 0
        self._batch_n = 0
        self._server: WSGIServer | None = None
        self._server_thread: threading.Thread | None = None

    def _update(self, **changes: Any) -> None:
        """Under the lock: change counts in place (``snapshot`` hands out copies)."""
        for name, value in changes.items():
            setattr(self._stats, name, value)

    def received(self, kind: str) -> None:
        child = self._received_by_kind.get(kind)
        if child is None:
            child = self._received_by_kind[kind] = self._received.labels(kind)
        child.inc()
        with self._lock:
            s = self._stats
            held = s.held + 1
            self._update(
                messages_received=s.messages_received + 1,
                held=held,
                max_held=max(s.max_held, held),
            )
            self._depth.set(held)

    def qos0_dropped(self) -> int:
        self._qos0_dropped.inc()
        with self._lock:
            self._update(qos0_dropped=self._stats.qos0_dropped + 1)
            return self._stats.qos0_dropped

    def invalid(self) -> None:
        self._invalid.inc()
        with self._lock:
            self._update(messages_invalid=self._stats.messages_invalid + 1)

    def settled(self, acked: bool) -> None:
        """A held message is done: acknowledged, or its ack dropped (stale connection)."""
        (self._acked if acked else self._dropped).inc()
        with self._lock:
            s = self._stats
            self._update(
                held=s.held - 1,
                messages_acked=s.messages_acked + acked,
                acks_dropped=s.acks_dropped + (not acked),
            )
            self._depth.set(s.held)

    def abandoned(self, count: int) -> None:
        """Messages left unacknowledged at shutdown (the broker redelivers them)."""
        with self._lock:
            self._update(held=self._stats.held - count)
            self._depth.set(self._stats.held)

    def gap(self, messages: int, samples: int | None) -> None:
        self._gaps.inc()
        self._gap_messages.inc(messages)
        if samples:
            self._gap_samples.inc(samples)
        with self._lock:
            s = self._stats
            self._update(
                gaps=s.gaps + 1,
                gap_messages=s.gap_messages + messages,
                gap_samples=s.gap_samples + (samples or 0),
            )

    def late(self, samples: int) -> None:
        self._late.inc()
        with self._lock:
            s = self._stats
            self._update(late_messages=s.late_messages + 1, late_samples=s.late_samples + samples)

    def duplicate(self) -> None:
        self._duplicates.inc()
        with self._lock:
            self._update(duplicates=self._stats.duplicates + 1)

    def sequence_restart(self) -> None:
        with self._lock:
            self._update(sequence_restarts=self._stats.sequence_restarts + 1)

    def deadletters_stored(self, count: int) -> None:
        self._deadletters.inc(count)
        with self._lock:
            self._update(deadletters_stored=self._stats.deadletters_stored + count)

    def broker_dropped(self, total: int) -> None:
        self._broker_dropped.set(total)
        with self._lock:
            self._update(broker_dropped=total)

    def subscribed(self, yes: bool) -> None:
        self._subscribed.set(1 if yes else 0)

    def connected(self) -> None:
        with self._lock:
            self._update(connects=self._stats.connects + 1)

    def write_took(self, seconds: float) -> None:
        self._latency.observe(seconds)
        self._last.set_to_current_time()
        with self._lock:
            self._latency_sum += seconds
            self._latency_n += 1
            self._update(last_write_at=datetime.now(UTC))

    def batch_written(self, points: int) -> None:
        self._points.inc(points)
        self._batch.observe(points)
        with self._lock:
            s = self._stats
            self._batch_sum += points
            self._batch_n += 1
            self._update(
                points_written=s.points_written + points, batches_written=s.batches_written + 1
            )

    def retried(self) -> None:
        self._retries.inc()
        with self._lock:
            self._update(write_retries=self._stats.write_retries + 1)

    def snapshot(self) -> IngestStats:
        with self._lock:
            return replace(self._stats)

    def interval_means(self) -> tuple[float, float]:
        """Mean write latency (ms) and mean batch size since the last call; resets them."""
        with self._lock:
            latency = 1000 * self._latency_sum / self._latency_n if self._latency_n else 0.0
            batch = self._batch_sum / self._batch_n if self._batch_n else 0.0
            self._latency_sum, self._latency_n, self._batch_sum, self._batch_n = 0.0, 0, 0, 0
            return latency, batch

    def serve(self, port: int, addr: str = "127.0.0.1") -> int:
        """Serve ``/metrics`` over HTTP in a daemon thread; return the bound port."""
        server, thread = start_http_server(port, addr, registry=self.registry)
        self._server, self._server_thread = server, thread
        return int(server.server_port)

    def close(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._server_thread is not None:
            self._server_thread.join(timeout=5)
            self._server_thread = None
