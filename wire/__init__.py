"""The runhours v1 wire contract: topics, payload models and ``WireError``.

Every service meets every other only through this package (MQTT) and ``store``
(InfluxDB), so nothing here may import another runhours package but ``common``.

>>> from wire import telemetry_topic, Telemetry, Sample, encode_telemetry
>>> topic = telemetry_topic("plant1", "line-a", "cnc-01")
"""

from wire.errors import WireError
from wire.payloads import (
    MAX_SAMPLES,
    STATES,
    IngestState,
    Sample,
    State,
    Status,
    Telemetry,
    decode_ingest_state,
    decode_status,
    decode_telemetry,
    encode_ingest_state,
    encode_sample,
    encode_status,
    encode_telemetry,
    from_epoch_ms,
    to_epoch_ms,
)
from wire.topics import (
    ALERTS_ROOT,
    DEADLETTER_ROOT,
    INGEST_STATE_SUBSCRIPTION,
    ROOT,
    MachineRef,
    alert_topic,
    deadletter_topic,
    ingest_state_topic,
    parse_ingest_state_topic,
    parse_topic,
    status_subscription,
    status_topic,
    telemetry_subscription,
    telemetry_topic,
    validate_id,
)

__all__ = [
    "ALERTS_ROOT",
    "DEADLETTER_ROOT",
    "INGEST_STATE_SUBSCRIPTION",
    "MAX_SAMPLES",
    "ROOT",
    "STATES",
    "IngestState",
    "MachineRef",
    "Sample",
    "State",
    "Status",
    "Telemetry",
    "WireError",
    "alert_topic",
    "deadletter_topic",
    "decode_ingest_state",
    "decode_status",
    "decode_telemetry",
    "encode_ingest_state",
    "encode_sample",
    "encode_status",
    "encode_telemetry",
    "from_epoch_ms",
    "ingest_state_topic",
    "parse_ingest_state_topic",
    "parse_topic",
    "status_subscription",
    "status_topic",
    "telemetry_subscription",
    "telemetry_topic",
    "to_epoch_ms",
    "validate_id",
]
