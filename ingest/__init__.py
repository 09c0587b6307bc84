"""The ingest service: MQTT telemetry → validation → InfluxDB, at least once, no duplicates.

>>> from common.settings import load_settings
>>> from ingest import IngestService, IngestSettings
>>> settings = load_settings(IngestSettings, None, influx_db="runhours")
>>> with IngestService(settings) as ingest:  # doctest: +SKIP
...     ingest.wait_idle(timeout=60)
...     print(ingest.stats.points_written)

``runhours ingest --config FILE`` runs the same service until SIGTERM/Ctrl-C.
See ingest/README.md.
"""

from ingest.config import IngestOptions, IngestSettings
from ingest.deadletter import deadletter_payload
from ingest.decode import Decoded, decode_message
from ingest.metrics import IngestStats
from ingest.points import status_point, telemetry_points, touched_markers
from ingest.service import IngestError, IngestService

__all__ = [
    "Decoded",
    "IngestError",
    "IngestOptions",
    "IngestService",
    "IngestSettings",
    "IngestStats",
    "deadletter_payload",
    "decode_message",
    "status_point",
    "telemetry_points",
    "touched_markers",
]
