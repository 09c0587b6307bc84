"""The runhours v1 wire contract: topics, payload models and shared settings.

Every service meets every other only through this package (MQTT) and ``store``
(InfluxDB), so nothing here may import another runhours package.

>>> from contract import telemetry_topic, Telemetry, Sample, encode_telemetry
>>> topic = telemetry_topic("plant1", "line-a", "cnc-01")
"""

from contract.errors import ContractError
from contract.payloads import (
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
from contract.topics import (
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
    "ContractError",
    "IngestState",
    "MachineRef",
    "Sample",
    "State",
    "Status",
    "Telemetry",
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
