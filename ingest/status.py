"""Where delivery stands, read back from InfluxDB (``runhours ingest status``).

Per machine: the sequence gaps the ingest reported (messages and samples lost in transit,
and what of them arrived late), the edge's own drops (``machine_status.dropped_total``:
buffer overflow or age, never a transit gap), and its presence; per ingest worker: its
last ``ingest_stats`` point, with the broker's own drop counter.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from store import InfluxClient
from store.influxql import quote_ident, quote_string, time_literal
from store.schema import (
    FIELD_BROKER_DROPPED,
    FIELD_BUFFERED,
    FIELD_DROPPED_TOTAL,
    FIELD_MESSAGES_RECEIVED,
    FIELD_ONLINE,
    FIELD_POINTS_WRITTEN,
    FIELD_QUEUE_DEPTH,
    INGEST_GAPS,
    INGEST_SEQUENCE,
    INGEST_STATS,
    MACHINE_STATUS,
    TAG_SITE,
    TAG_WORKER,
)
from wire import MachineRef, from_epoch_ms


@dataclass(frozen=True)
class MachineDelivery:
    """One machine's delivery over the window."""

    ref: MachineRef
    gaps: int = 0
    gap_messages: int = 0
    gap_samples: int | None = 0  # None when a gap's samples are unknown (no offsets)
    recovered_messages: int = 0
    recovered_samples: int = 0
    last_gap_at: datetime | None = None
    last_cause: str | None = None
    seq: int | None = None  # highest seq the ingest has seen
    online: bool | None = None
    buffered: int | None = None
    edge_dropped: int = 0  # samples the edge dropped within the window
    edge_dropped_total: int | None = None  # over the edge buffer's whole life

    @property
    def lost_messages(self) -> int:
        return self.gap_messages - self.recovered_messages

    @property
    def lost_samples(self) -> int | None:
        return None if self.gap_samples is None else self.gap_samples - self.recovered_samples

    @property
    def troubled(self) -> bool:
        return self.lost_messages > 0 or self.edge_dropped > 0


@dataclass(frozen=True)
class WorkerHealth:
    worker: str
    at: datetime
    messages_received: int
    points_written: int
    held: int
    broker_dropped: int | None


def _int(value: Any) -> int | None:
    return None if value is None else int(value)


def delivery_status(
    client: InfluxClient, since: datetime, site: str | None = None
) -> tuple[list[MachineDelivery], list[WorkerHealth]]:
    """Machines (sorted by lost samples, then name) and workers since ``since``."""
    only = f" AND {TAG_SITE} = {quote_string(site)}" if site else ""
    window = f"time >= {time_literal(since)}{only}"
    by = " GROUP BY site, line, machine"
    rows: dict[MachineRef, dict[str, Any]] = {}

    def row(r: dict[str, Any]) -> dict[str, Any]:
        return rows.setdefault(MachineRef(r["site"], r["line"], r["machine"]), {})

    for r in client.query_rows(f"SELECT * FROM {INGEST_GAPS} WHERE {window}{by}"):
        m = row(r)
        m["gaps"] = m.get("gaps", 0) + 1
        m["gap_messages"] = m.get("gap_messages", 0) + int(r["messages"])
        if r.get("samples") is None or m.get("gap_samples", 0) is None:
            m["gap_samples"] = None
        else:
            m["gap_samples"] = m.get("gap_samples", 0) + int(r["samples"])
        m["recovered_messages"] = m.get("recovered_messages", 0) + int(
            r.get("recovered_messages") or 0
        )
        m["recovered_samples"] = m.get("recovered_samples", 0) + int(
            r.get("recovered_samples") or 0
        )
        at = from_epoch_ms(int(r["time"]))
        if m.get("last_gap_at") is None or at >= m["last_gap_at"]:
            m["last_gap_at"], m["last_cause"] = at, r.get("cause")
    where_site = f" WHERE {TAG_SITE} = {quote_string(site)}" if site else ""
    for r in client.query_rows(f'SELECT last("seq") AS seq FROM {INGEST_SEQUENCE}{where_site}{by}'):
        row(r)["seq"] = _int(r["seq"])
    online, buffered, dropped = map(
        quote_ident, (FIELD_ONLINE, FIELD_BUFFERED, FIELD_DROPPED_TOTAL)
    )
    for r in client.query_rows(
        f"SELECT last({online}) AS online, last({buffered}) AS buffered, "
        f"last({dropped}) AS dropped_total FROM {MACHINE_STATUS}{where_site}{by}"
    ):
        m = row(r)
        m["online"] = None if r["online"] is None else r["online"] > 0
        m["buffered"], m["edge_dropped_total"] = _int(r["buffered"]), _int(r["dropped_total"])
    for r in client.query_rows(
        f"SELECT spread({dropped}) AS dropped FROM {MACHINE_STATUS} WHERE {window}{by}"
    ):
        row(r)["edge_dropped"] = _int(r["dropped"]) or 0
    machines = [MachineDelivery(ref, **fields) for ref, fields in rows.items()]
    machines.sort(key=lambda m: (-(m.lost_samples or m.lost_messages), m.ref))
    workers = [
        WorkerHealth(
            worker=r[TAG_WORKER],
            at=from_epoch_ms(int(r["time"])),
            messages_received=_int(r[FIELD_MESSAGES_RECEIVED]) or 0,
            points_written=_int(r[FIELD_POINTS_WRITTEN]) or 0,
            held=_int(r[FIELD_QUEUE_DEPTH]) or 0,
            broker_dropped=_int(r.get(FIELD_BROKER_DROPPED)),
        )
        for r in client.query_rows(
            f"SELECT * FROM {INGEST_STATS} WHERE time >= {time_literal(since)} "
            f"GROUP BY {TAG_WORKER} ORDER BY time DESC LIMIT 1"
        )
    ]
    return machines, workers
