"""Bad input, fuzzed: no input crashes the ingest's decoder; every message it accepts
encodes to line protocol the real InfluxDB stores exactly, and every one it refuses says why
before any of it is written. The fast path and the general one agree byte for byte.

Hypothesis generates the inputs; the example counts are fixed (``settings``) so a run says
how many were tried: 3,000 arbitrary payloads, 1,500 structured near-misses and 300
contract-valid messages written to InfluxDB and read back, and 500 canonical messages with
one thing changed, judged the same by the fast path and the general one.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ingest.decode import decode_message
from ingest.points import RESERVED_FIELDS
from store import InfluxClient
from wire import STATES, Sample, Telemetry, encode_telemetry, from_epoch_ms
from wire.payloads import MAX_TS_MS

TOPIC = "runhours/v1/plant1/line-a/cnc-01/telemetry"

ids = st.from_regex(r"[A-Za-z0-9_.-]{1,64}", fullmatch=True)
names = st.from_regex(r"[a-z][a-z0-9_]{0,63}", fullmatch=True)
floats = st.floats(allow_nan=False, allow_infinity=False) | st.integers(-(2**53), 2**53)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner),
    max_leaves=20,
)


def _check(decoded: Any) -> None:
    """Either points, or a reason and no points: never both, never neither."""
    if decoded.valid:
        assert decoded.lines and decoded.points > 0
    else:
        assert decoded.error and not decoded.lines and decoded.points == 0


@settings(max_examples=3000, deadline=None)
@given(payload=st.binary(max_size=2000) | st.text(max_size=500).map(str.encode))
def test_arbitrary_bytes_never_crash_the_decoder(payload: bytes) -> None:
    _check(decode_message(TOPIC, payload))
    if payload:  # an empty retained status clears it: valid, nothing to store
        _check(decode_message(TOPIC.replace("telemetry", "status"), payload))


@settings(max_examples=1500, deadline=None)
@given(
    machine=st.one_of(st.just("cnc-01"), st.text(max_size=70), json_values),
    seq=st.one_of(st.integers(-5, 2**70), json_values),
    samples=st.one_of(
        st.lists(
            st.fixed_dictionaries(
                {"ts": st.one_of(st.integers(-(2**65), 2**65), st.text(max_size=30), json_values)},
                optional={
                    "state": st.one_of(st.sampled_from(STATES), json_values),
                    "values": st.dictionaries(
                        st.one_of(names, st.text(max_size=8)),
                        st.one_of(floats, st.integers(), json_values),
                        max_size=4,
                    ),
                },
            ),
            max_size=5,
        ),
        json_values,
    ),
    extra=st.dictionaries(st.sampled_from(["counters", "historical", "offset", "x"]), json_values),
)
def test_near_miss_messages_are_refused_with_a_reason_or_stored_whole(
    machine: Any, seq: Any, samples: Any, extra: dict[str, Any]
) -> None:
    body = json.dumps({"machine": machine, "seq": seq, "samples": samples, **extra})
    _check(decode_message(TOPIC, body.encode()))
    _same_both_ways(TOPIC, body.encode())


def _same_both_ways(topic: str, payload: bytes) -> None:
    """The fast path (ingest/fastpath.py) and the general one agree exactly."""
    quick, general = decode_message(topic, payload), decode_message(topic, payload, fast=False)
    assert quick.valid == general.valid, (quick.error, general.error, payload[:300])
    assert (quick.lines, quick.points, quick.touched) == (
        general.lines,
        general.points,
        general.touched,
    )
    assert (quick.ref, quick.seq, quick.offset, quick.samples) == (
        general.ref,
        general.seq,
        general.offset,
        general.samples,
    )


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (b"[" * 100_000 + b"]" * 100_000, "cannot store the message: RecursionError"),
        (b'{"machine":"cnc-01","seq":0,"samples":[{"ts":1,"values":{"x_c":NaN}}]}', "finite"),
        (b'{"machine":"cnc-01","seq":0,"samples":[{"ts":1,"values":{"x_c":Infinity}}]}', "finite"),
        (
            json.dumps(
                {"machine": "cnc-01", "seq": 0, "samples": [{"ts": 1, "state": "idle"}] * 100_001}
            ).encode(),
            "at most 100000",
        ),
        (  # one storable sample and one after 2262: refused whole, nothing written
            json.dumps(
                {
                    "machine": "cnc-01",
                    "seq": 0,
                    "samples": [{"ts": 1, "state": "idle"}, {"ts": 10**13, "state": "idle"}],
                }
            ).encode(),
            "samples.1.ts: .*out of range",
        ),
        (b"x" * (16 * 1024 * 1024 + 1), "more than the ingest takes"),
    ],
)
def test_hostile_inputs_are_refused_before_anything_is_written(payload: bytes, reason: str) -> None:
    decoded = decode_message(TOPIC, payload, max_bytes=16 * 1024 * 1024)
    assert not decoded.valid and decoded.points == 0 and not decoded.lines
    assert decoded.error is not None
    assert re.search(reason, decoded.error), decoded.error


def test_unicode_and_wildcard_ids_in_the_topic_are_refused() -> None:
    body = b'{"machine":"cnc-01","seq":0,"samples":[{"ts":1,"state":"idle"}]}'
    for topic in (
        "runhours/v1/plänt/line-a/cnc-01/telemetry",
        "runhours/v1/plant1/line a/cnc-01/telemetry",
        "runhours/v1/plant1/line-a/cnc-01/extra/telemetry",
    ):
        decoded = decode_message(topic, body)
        assert not decoded.valid and "topic" in (decoded.error or ""), (topic, decoded.error)


samples = st.builds(
    lambda ts, state, values: Sample(ts=from_epoch_ms(ts), state=state, values=values),
    ts=st.integers(0, MAX_TS_MS),
    state=st.sampled_from(STATES),
    values=st.dictionaries(names, floats, max_size=5),
)


@settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    line=ids,
    machine=ids,
    batch=st.lists(samples, min_size=1, max_size=8, unique_by=lambda s: s.ts_ms),
    counters=st.dictionaries(names, floats, max_size=2),
)
def test_every_valid_message_is_stored_exactly_by_the_real_influxdb(
    influx: InfluxClient, line: str, machine: str, batch: list[Sample], counters: dict[str, float]
) -> None:
    message = Telemetry(machine=machine, seq=0, samples=batch, counters=counters)
    topic = f"runhours/v1/plant1/{line}/{machine}/telemetry"
    decoded = decode_message(topic, encode_telemetry(message))
    _same_both_ways(topic, encode_telemetry(message))
    _check(decoded)
    fields = set(counters) | {n for s in batch for n in s.values}
    if not decoded.valid:  # only names that would clash with the point's other parts
        assert (fields & set(RESERVED_FIELDS)) or (set(counters) & set(batch[-1].values))
        return
    influx.write_lines(decoded.lines)  # a 400 (InfluxWriteRejected) fails the test
    where = f"machine = '{machine}' AND line = '{line}'"
    for sample in batch:
        rows = influx.query_rows(
            f"SELECT * FROM telemetry WHERE {where} AND time = {sample.ts_ms}ms"
        )
        assert len(rows) == 1, (sample, rows)
        assert rows[0]["state"] == sample.state
        for name, value in sample.values.items():
            stored = rows[0][name]
            assert stored == float(value) or math.isclose(stored, float(value)), (name, value)


MUTATIONS: list[tuple[str, Any]] = [
    ("counters", None),
    ("counters", {"run_seconds_total": True}),
    ("counters", {"state": 1.0}),
    ("counters", {"vibration_mm_s": 1.0}),  # clashes with a value of the last sample
    ("counters", {"x": 10**400}),
    ("historical", None),
    ("historical", 1),
    ("offset", None),
    ("offset", -1),
    ("offset", 1.0),
    ("seq", True),
    ("machine", "cnc-02"),
    ("extra", 1),
    ("samples", []),
    ("sample.values", None),
    ("sample.values", {}),
    ("sample.values", {"Bad": 1.0}),
    ("sample.values", {"x_c": float("nan")}),
    ("sample.values", {"time": 1.0}),
    ("sample.values", {"x_c": 10**400}),
    ("sample.values", {"x_c": 2**60}),
    ("sample.state", None),
    ("sample.state", "spinning"),
    ("sample.ts", "2026-03-02T08:00:00+01:00"),
    ("sample.ts", "2026-03-02T08:00:00"),
    ("sample.ts", -1),
    ("sample.ts", MAX_TS_MS + 1),
    ("sample.ts", 1.5),
    ("sample.extra", 1),
]


@settings(max_examples=500, deadline=None)
@given(data=st.data(), mutation=st.sampled_from(MUTATIONS), n=st.integers(1, 5))
def test_one_mutation_from_valid_is_judged_the_same_by_both_ways(
    data: st.DataObject, mutation: tuple[str, Any], n: int
) -> None:
    """A canonical message with one thing changed: the fast path either writes exactly what
    the general one writes or leaves it to the general one, which says what is wrong."""
    body: dict[str, Any] = {
        "machine": "cnc-01",
        "seq": 3,
        "offset": 30,
        "samples": [
            {"ts": 1_772_409_600_000 + i, "state": "running", "values": {"vibration_mm_s": 1.5}}
            for i in range(n)
        ],
        "counters": {"run_seconds_total": 3600.0},
    }
    where, value = mutation
    index = data.draw(st.integers(0, n - 1))
    if where.startswith("sample."):
        body["samples"][index][where.removeprefix("sample.")] = value
    else:
        body[where] = value
    payload = json.dumps(body).encode()  # NaN becomes the literal NaN, as a bad edge sends it
    _check(decode_message(TOPIC, payload))
    _same_both_ways(TOPIC, payload)
