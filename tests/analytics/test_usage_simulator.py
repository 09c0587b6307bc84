"""The usage engine against the simulators' ground truth (samples written as the ingest would).

A fleet of 10 machines for 7 simulated days at 10 s sampling, one of them with a sensor
blackout longer than max_gap. Per machine and local day: running hours equal the truth
within 0.01 h wherever coverage is 100 %, and coverage is below 100 % exactly on the day
of the blackout. The end-to-end version through MQTT is the integrator's test.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from datetime import timedelta

import pytest

from analytics.rollups import fleet_usage, rebuild_rollups
from runhours.services import LocalServices
from simulators import GroundTruth, MachineSim, fleet
from store import InfluxClient
from store.schema import FIELD_STATE, TELEMETRY
from tests.support.telemetry import BERLIN, berlin
from wire import to_epoch_ms

START = berlin(2026, 10, 19)  # a Monday; the week spans the DST change on 25 Oct
DAYS = 7
Simulated = tuple[InfluxClient, dict[str, GroundTruth], str]
BLACKOUT = (berlin(2026, 10, 21, 10), berlin(2026, 10, 21, 10, 40))  # 40 min > max_gap


def write_readings(influx: InfluxClient, sim: MachineSim) -> None:
    """The points the ingest would write, pre-encoded (ids and names need no escaping)."""
    spec = sim.spec
    prefix = f"{TELEMETRY},line={spec.line},machine={spec.machine},site={spec.site} "
    lines = []
    for reading in sim.advance(START + timedelta(days=DAYS)):
        fields = [f"{k}={float(v)!r}" for k, v in reading.sample.values.items()]
        if reading.sample.state is not None:
            fields.append(f'{FIELD_STATE}="{reading.sample.state}"')
        fields += [f"{k}={float(v)!r}" for k, v in reading.counters.items()]
        lines.append(f"{prefix}{','.join(fields)} {to_epoch_ms(reading.sample.ts)}")
    for i in range(0, len(lines), 50_000):
        influx.write_lines("\n".join(lines[i : i + 50_000]).encode())


def true_running_hours(truth: GroundTruth, day_start_ms: int, day_end_ms: int) -> float:
    return (
        sum(
            seconds["running"]
            for hour, seconds in truth.hours.items()
            if day_start_ms <= to_epoch_ms(hour) < day_end_ms
        )
        / 3600
    )


@pytest.fixture(scope="module")
def simulated(
    services: LocalServices, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Simulated]:
    database = f"t_usage_sim_{tmp_path_factory.getbasetemp().name[-6:]}"
    with InfluxClient(services.influx_url, database) as client:
        client.ensure_database()
        specs = fleet(10, start=START)
        specs[4] = replace(specs[4], blackouts=(BLACKOUT,))
        truths: dict[str, GroundTruth] = {}
        for spec in specs:
            sim = MachineSim(spec, START, sample_interval_s=10)
            write_readings(client, sim)
            truths[spec.machine] = sim.truth
        rebuild_rollups(client, START, START + timedelta(days=DAYS))
        yield client, truths, specs[4].machine
        client.query(f'DROP DATABASE "{database}"', epoch=None)


def test_daily_running_hours_match_the_ground_truth(simulated: Simulated) -> None:
    client, truths, blacked_out = simulated
    end = START + timedelta(days=DAYS)
    rows = fleet_usage(client, START, end, by="day", tz=BERLIN)
    assert len(rows) == 10 * DAYS
    partial = []
    for usage in rows:
        truth = truths[usage.machine]
        expected = true_running_hours(truth, to_epoch_ms(usage.start), to_epoch_ms(usage.end))
        if usage.coverage == 1.0:
            assert usage.state_seconds["running"] / 3600 == pytest.approx(expected, abs=0.01)
            assert not usage.counter_mismatch()
        else:
            partial.append((usage.machine, usage.start))
    # Coverage is below 100 % exactly where data was missing beyond max_gap.
    assert partial == [(blacked_out, berlin(2026, 10, 21))]
    day = next(u for u in rows if (u.machine, u.start) == partial[0])
    # 40 min blackout: the last sample (09:59:50) holds 5 min, so 35 min 10 s are unknown.
    assert day.known_seconds == 24 * 3600 - (35 * 60 + 10)
    # The 25-hour day (DST change) is a full day too.
    long_day = next(u for u in rows if u.start == berlin(2026, 10, 25))
    assert long_day.end.timestamp() - long_day.start.timestamp() == 25 * 3600


def test_rollups_and_raw_agree_on_the_simulated_week(simulated: Simulated) -> None:
    client, _, _ = simulated
    end = START + timedelta(days=DAYS)
    rolled = fleet_usage(client, START, end, by="day", tz=BERLIN)
    raw = fleet_usage(client, START, end, by="day", tz=BERLIN, from_raw=True)
    assert rolled == raw
