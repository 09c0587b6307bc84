"""*Ingest health*: throughput, dead letters, write latency, queues and edge backlogs.

Ingest workers store their counters in ``ingest_stats`` every few seconds (tag
``worker``); edge agents report their store-and-forward backlog with their status
(``machine_status``). Rates are derivatives of the running totals, so a worker
restart (totals back to 0) shows as a gap, never as a negative rate.
"""

from __future__ import annotations

from grafana_foundation_sdk.builders import dashboard as builder

from dashboards.influxql import InfluxQL
from dashboards.layout import new_dashboard
from dashboards.panels import time_series
from dashboards.variables import TIME_FILTER, machine_variables, machine_where
from store.influxql import quote_ident
from store.schema import (
    FIELD_BATCH_POINTS,
    FIELD_BUFFERED,
    FIELD_DROPPED_TOTAL,
    FIELD_MESSAGES_INVALID,
    FIELD_MESSAGES_RECEIVED,
    FIELD_POINTS_WRITTEN,
    FIELD_QUEUE_DEPTH,
    FIELD_WRITE_LATENCY_MS,
    INGEST_STATS,
    MACHINE_STATUS,
    TAG_MACHINE,
    TAG_WORKER,
)

UID = "runhours-ingest"
STATS = quote_ident(INGEST_STATS)
PER_WORKER = f"WHERE {TIME_FILTER} GROUP BY time($__interval), {quote_ident(TAG_WORKER)}"
# Workers report every few seconds: narrower buckets would be mostly empty.
MIN_INTERVAL = "15s"


def _per_worker(select: str) -> InfluxQL:
    return InfluxQL(f"SELECT {select} FROM {STATS} {PER_WORKER} fill(null)").alias(
        "$tag_worker $col"
    )


def _rate(field: str) -> str:
    return f"non_negative_derivative(max({quote_ident(field)}), 1s) AS {quote_ident('rate')}"


def _edge(field: str) -> InfluxQL:
    return InfluxQL(
        f"SELECT last({quote_ident(field)}) FROM {quote_ident(MACHINE_STATUS)} "
        f"{machine_where()} GROUP BY time($__interval), {quote_ident(TAG_MACHINE)} fill(previous)"
    ).alias("$tag_machine")


def dashboard() -> builder.Dashboard:
    """Build the ingest health dashboard."""
    board = new_dashboard(UID, "runhours / Ingest health", machine_variables())
    board = board.description(
        "Is the pipeline keeping up? Ingest throughput and errors per worker, InfluxDB write "
        "latency, and the edge agents' store-and-forward backlogs (site/line/machine filter "
        "the edge panels only)."
    ).time("now-6h", "now")
    panels = [
        time_series(
            "Messages received per second",
            "suffix: msg/s",
            _per_worker(_rate(FIELD_MESSAGES_RECEIVED)),
            description="MQTT telemetry messages taken from the broker, per ingest worker.",
        ),
        time_series(
            "Points written per second",
            "suffix: points/s",
            _per_worker(_rate(FIELD_POINTS_WRITTEN)),
            description="Points InfluxDB accepted, per ingest worker.",
        ),
        time_series(
            "Dead letters",
            "short",
            _per_worker(
                f"non_negative_difference(max({quote_ident(FIELD_MESSAGES_INVALID)})) "
                'AS "dead letters"'
            ),
            description="Invalid messages sent to the dead-letter topic per interval; "
            "any at all deserve a look at runhours/v1/deadletter/#.",
            bars=True,
        ),
        time_series(
            "Write latency",
            "ms",
            _per_worker(
                f'mean({quote_ident(FIELD_WRITE_LATENCY_MS)}) AS "mean", '
                f'max({quote_ident(FIELD_WRITE_LATENCY_MS)}) AS "max"'
            ),
            description="Time of one batch write to InfluxDB, retries included.",
        ),
        time_series(
            "Batch size",
            "short",
            _per_worker(f'mean({quote_ident(FIELD_BATCH_POINTS)}) AS "points"'),
            description="Points per InfluxDB write.",
        ),
        time_series(
            "Queue depth",
            "short",
            _per_worker(f'max({quote_ident(FIELD_QUEUE_DEPTH)}) AS "queued"'),
            description="Messages received but not yet written and acknowledged; it stays "
            "below the MQTT receive maximum (backpressure).",
        ),
        time_series(
            "Edge buffer backlog",
            "short",
            _edge(FIELD_BUFFERED),
            description="Samples each edge agent holds on disk, not yet acknowledged by the "
            "broker. Grows during a broker or network outage, drains after it.",
        ),
        time_series(
            "Edge samples dropped (buffer overflow)",
            "short",
            _edge(FIELD_DROPPED_TOTAL),
            description="Running total of samples an agent dropped because its buffer was "
            "full (oldest first). Anything above 0 is data lost for good.",
        ),
    ]
    for panel in panels:
        board = board.with_panel(panel.interval(MIN_INTERVAL))
    return board
