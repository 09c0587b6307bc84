"""The v1 wire contract: what is accepted, and what is rejected with which reason."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from wire import (
    IngestState,
    Sample,
    Telemetry,
    WireError,
    deadletter_topic,
    decode_ingest_state,
    decode_telemetry,
    encode_ingest_state,
    encode_telemetry,
    ingest_state_topic,
    parse_ingest_state_topic,
    parse_topic,
    telemetry_subscription,
    telemetry_topic,
)

TOPIC = "runhours/v1/plant1/line-a/cnc-01/telemetry"


def _payload(**overrides: object) -> bytes:
    body: dict[str, object] = {
        "machine": "cnc-01",
        "seq": 7,
        "samples": [{"ts": 1_790_000_000_123, "state": "running", "values": {"vibration_mm_s": 2}}],
    }
    body.update(overrides)
    return json.dumps(body).encode()


def test_round_trip_keeps_every_field() -> None:
    ref, message = decode_telemetry(TOPIC, _payload(counters={"run_seconds_total": 10}))
    assert ref == ("plant1", "line-a", "cnc-01")
    assert message.samples[0].ts_ms == 1_790_000_000_123
    assert message.samples[0].values == {"vibration_mm_s": 2.0}
    again = decode_telemetry(TOPIC, encode_telemetry(message))[1]
    assert again == message


def test_rfc3339_with_zone_is_converted_to_utc() -> None:
    payload = _payload(samples=[{"ts": "2026-10-25T02:30:00.250+02:00", "state": "idle"}])
    sample = decode_telemetry(TOPIC, payload)[1].samples[0]
    assert sample.ts == datetime(2026, 10, 25, 0, 30, 0, 250_000, tzinfo=UTC)


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (b"{not json", "malformed JSON"),
        (b"[1, 2]", "must be a JSON object"),
        (_payload(seq="7"), "seq"),
        (_payload(seq=-1), "seq"),
        (_payload(samples=[]), "samples"),
        (_payload(machine="cnc-02"), "topic says 'cnc-01'"),
        (_payload(samples=[{"ts": "2026-10-01T08:00:00", "state": "idle"}]), "naive timestamp"),
        (_payload(samples=[{"ts": 1, "state": "spinning"}]), "samples.0.state"),
        (_payload(samples=[{"ts": 1, "values": {"Bad Name": 1}}]), "must match"),
        (_payload(samples=[{"ts": 1, "values": {"temp_c": "hot"}}]), "samples.0.values"),
        (_payload(samples=[{"ts": 1, "values": {"temp_c": True}}]), "samples.0.values"),
        (_payload(samples=[{"ts": 1}]), "needs a state or at least one value"),
        (_payload(extra=1), "extra"),
        # Out of range: the reason names the field (not a bare OverflowError).
        (_payload(samples=[{"ts": 10**19, "state": "idle"}]), "samples.0.ts: .*out of range"),
        (
            _payload(samples=[{"ts": "0001-01-01T00:00:00+01:00", "state": "idle"}]),
            "samples.0.ts: .*out of range",
        ),
        (
            _payload(samples=[{"ts": 1, "values": {"temp_c": 10**400}}]),
            "samples.0.values: .*temp_c",
        ),
        (_payload(counters={"run_seconds_total": 10**400}), "counters: .*run_seconds_total"),
        # What InfluxDB cannot store is refused before any of the message is written.
        (_payload(samples=[{"ts": 9_300_000_000_000, "state": "idle"}]), "samples.0.ts: .*2262"),
        (
            _payload(samples=[{"ts": "1600-01-01T00:00:00Z", "state": "idle"}]),
            "samples.0.ts: .*1677",
        ),
        (_payload(samples=[{"ts": 1, "state": "idle"}] * 100_001), "samples: .*at most 100000"),
        (_payload(offset=-1), "offset"),
    ],
)
def test_invalid_payloads_name_the_field(payload: bytes, reason: str) -> None:
    with pytest.raises(WireError, match=reason):
        decode_telemetry(TOPIC, payload)


@pytest.mark.parametrize("machine", ["cnc 01", "cnc,01", "a" * 65, "x=y"])
def test_bad_machine_ids_are_rejected(machine: str) -> None:
    with pytest.raises(WireError, match="not a valid id"):
        parse_topic(f"runhours/v1/plant1/line-a/{machine}/telemetry")
    with pytest.raises(WireError):
        telemetry_topic("plant1", "line-a", machine)


def test_topics() -> None:
    assert telemetry_topic("p", "l", "m") == "runhours/v1/p/l/m/telemetry"
    assert telemetry_subscription() == "runhours/v1/+/+/+/telemetry"
    assert telemetry_subscription("ingest") == "$share/ingest/runhours/v1/+/+/+/telemetry"
    assert deadletter_topic(TOPIC) == "runhours/v1/deadletter/plant1/line-a/cnc-01/telemetry"


def test_models_are_typed() -> None:
    sample = Sample(ts=datetime(2026, 1, 1, tzinfo=UTC), state="off")
    message = Telemetry(machine="m", seq=0, samples=[sample])
    assert json.loads(encode_telemetry(message)) == {
        "machine": "m",
        "seq": 0,
        "samples": [{"ts": 1_767_225_600_000, "state": "off"}],
    }


@pytest.mark.parametrize("machine", ["cnc,01", "cnc 01", "ok-but-trailing\n"])
def test_payload_machine_id_is_anchored(machine: str) -> None:
    with pytest.raises(ValueError, match="machine"):
        Telemetry.model_validate(
            {"machine": machine, "seq": 0, "samples": [{"ts": 1, "state": "off"}]}
        )


def test_an_ingest_state_serves_its_own_site_or_every_site() -> None:
    ts = datetime(2026, 10, 1, tzinfo=UTC)
    assert IngestState(online=True, ts=ts).serves("plant1")
    assert IngestState(online=True, ts=ts, site="plant1").serves("plant1")
    assert not IngestState(online=True, ts=ts, site="plant2").serves("plant1")
    assert not IngestState(online=False, ts=ts).serves("plant1")
    state = IngestState(online=True, ts=ts, site="plant1")
    assert decode_ingest_state(encode_ingest_state(state)) == state
    assert ingest_state_topic("ingest-1") == "runhours/v1/ingest/ingest-1/state"
    assert parse_ingest_state_topic("runhours/v1/ingest/ingest-1/state") == "ingest-1"
    with pytest.raises(WireError, match="site"):
        decode_ingest_state(b'{"online": true, "ts": 1, "site": "a b"}')


def test_backoff_doubles_from_initial_to_the_cap_with_equal_jitter() -> None:
    import random

    from common.backoff import backoff_delay

    ceilings = [backoff_delay(n, 0.5, 30.0, jitter=False) for n in range(10)]
    assert ceilings == [0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0, 30.0, 30.0]
    assert backoff_delay(-1, 0.5, 30.0, jitter=False) == 0.5  # never below the first delay
    assert backoff_delay(10**6, 0.5, 30.0, jitter=False) == 30.0  # no overflow
    rng = random.Random(7)
    for attempt, ceiling in enumerate(ceilings):
        delays = [backoff_delay(attempt, 0.5, 30.0, rng) for _ in range(200)]
        assert all(ceiling / 2 <= d <= ceiling for d in delays)
        assert len(set(delays)) > 100  # spread, not lockstep
