"""The ingest's InfluxDB writer, without a database: what it does before any request."""

from __future__ import annotations

import threading

from ingest.writer import InfluxWriter
from store import InfluxClient


def test_an_empty_body_sends_no_request_and_records_no_write_latency() -> None:
    """A batch of statuses only has no state points: its state write must not count as a
    near-zero write in the latency gauge. Nothing listens on the URL, so a request would
    fail, retry once and give up (``WriteAbandoned``)."""
    abandon = threading.Event()
    latencies: list[float] = []
    with InfluxClient("http://127.0.0.1:9", "nowhere", timeout=0.5) as client:
        writer = InfluxWriter(
            client,
            retry_initial=0.01,
            retry_max=0.01,
            abandon=abandon,
            on_retry=abandon.set,
            on_write=latencies.append,
        )
        writer.write(b"")
        writer.write(lambda: b"", precision="ns")
    assert latencies == []
    assert not abandon.is_set()
