"""The machine simulators: determinism, exact ground truth, calendar, wear, hour meter, faults.

No services needed: the simulators are pure in-process models. Every check compares exact
figures (integer milliseconds) where the design promises exactness.
"""

from __future__ import annotations

import asyncio
import json
import math
import random
import re
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import numpy as np
import pytest

from simulators import (
    WEAR_PROFILES,
    Degradation,
    GroundTruth,
    MachineSim,
    MachineSpec,
    Reading,
    SimClock,
    fleet,
    read_ground_truth,
    write_ground_truth,
)
from simulators.wear import WearCurve
from wire import STATES, Sample, Telemetry, decode_telemetry, encode_telemetry, telemetry_topic

BERLIN = ZoneInfo("Europe/Berlin")
HOUR_MS = 3_600_000
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
VALUE_NAME = re.compile(r"[a-z][a-z0-9_]{0,63}")


def ms(ts: datetime) -> int:
    return (ts - EPOCH) // timedelta(milliseconds=1)


def utc(
    year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0, us: int = 0
) -> datetime:
    return datetime(year, month, day, hour, minute, second, us, tzinfo=UTC)


def fingerprint(readings: list[Reading]) -> list[tuple[object, ...]]:
    return [
        (
            r.sample.ts,
            r.sample.state,
            tuple(r.sample.values.items()),
            r.counters["run_seconds_total"],
        )
        for r in readings
    ]


def step_integral(
    readings: list[Reading], end: datetime, blackouts: tuple[tuple[datetime, datetime], ...] = ()
) -> dict[int, dict[str, int]]:
    """Per UTC hour, milliseconds per state when each reading's state holds until the next
    reading (the last one until ``end``), leaving out the blackout windows."""
    cuts = sorted((ms(lo), ms(hi)) for lo, hi in blackouts)
    spent: dict[int, dict[str, int]] = defaultdict(lambda: dict.fromkeys(STATES, 0))

    def add(lo: int, hi: int, state: str) -> None:
        while lo < hi:
            hour = lo - lo % HOUR_MS
            cut = min(hi, hour + HOUR_MS)
            spent[hour][state] += cut - lo
            lo = cut

    stamps = [ms(r.sample.ts) for r in readings] + [ms(end)]
    for reading, lo, hi in zip(readings, stamps, stamps[1:], strict=False):
        assert reading.sample.state is not None
        for b0, b1 in cuts:
            if b1 <= lo or b0 >= hi:
                continue
            add(lo, max(lo, b0), reading.sample.state)
            lo = max(lo, b1)
        add(lo, hi, reading.sample.state)
    return {hour: states for hour, states in spent.items() if any(states.values())}


def truth_ms(truth: GroundTruth) -> dict[int, dict[str, int]]:
    """Truth per UTC hour in milliseconds; hours wholly inside blackouts left out."""
    return {
        ms(hour): {state: round(seconds * 1000) for state, seconds in states.items()}
        for hour, states in truth.hours.items()
        if any(states.values())
    }


# --- determinism -----------------------------------------------------------------------------


def test_same_spec_gives_same_readings_however_advance_is_split() -> None:
    start = utc(2026, 3, 4, 5, 17, 3, 250000)  # Wednesday, not on an hour or second
    degrading = Degradation(onset=start + timedelta(hours=6), days_to_failure=1.2, repair_hours=2)
    spec = MachineSpec(
        "cnc-07",
        "cnc_mill",
        seed=42,
        degradation=degrading,
        blackouts=((start + timedelta(hours=20), start + timedelta(hours=21, seconds=7.5)),),
    )
    end = start + timedelta(days=2)

    whole = MachineSim(spec, start, sample_interval_s=7.5).advance(end)

    pieces: list[Reading] = []
    split = MachineSim(spec, start, sample_interval_s=7.5)
    rng = random.Random(7)
    t = start
    while t < end:
        # Steps from sub-millisecond to several hours, sometimes the same `until` twice.
        t = min(end, t + timedelta(seconds=rng.choice([0, 0.0004, 1, 9.9991, 600, 5400, 20000])))
        pieces.extend(split.advance(t))

    assert len(whole) > 15_000
    assert fingerprint(pieces) == fingerprint(whole)
    again = MachineSim(spec, start, sample_interval_s=7.5)
    again.advance(end)
    assert again.truth == split.truth
    other_seed = MachineSim(
        MachineSpec("cnc-07", "cnc_mill", seed=43), start, sample_interval_s=7.5
    )
    assert fingerprint(other_seed.advance(end)) != fingerprint(whole)


# --- ground truth equals the readings' step function ----------------------------------------


@pytest.mark.parametrize("kind", ["cnc_mill", "pump", "compressor"])
def test_truth_per_hour_is_exact_and_equals_the_step_integral(kind: str) -> None:
    start = utc(2026, 3, 5, 4, 41, 12, 345000)  # Thursday, mid-hour
    end = start + timedelta(days=3, minutes=17)
    blackouts = (
        (start - timedelta(minutes=5), start + timedelta(minutes=12, milliseconds=3)),
        (utc(2026, 3, 5, 10, 50, 0, 1000), utc(2026, 3, 5, 13, 7, 30, 999000)),
        (utc(2026, 3, 6, 21, 30), utc(2026, 3, 6, 21, 30, 0, 1000)),  # one millisecond
    )
    spec = MachineSpec(f"m-{kind}", kind, seed=5, blackouts=blackouts)  # type: ignore[arg-type]
    sim = MachineSim(spec, start, sample_interval_s=10.0)
    readings = sim.advance(end)
    truth = sim.truth

    assert truth.start == start and truth.end == end
    assert truth.samples == len(readings)
    # Every hour of the span is present; full hours add up to 3600 s with the blackout time.
    hours = sorted(truth.hours)
    assert hours[0] == start.replace(minute=0, second=0, microsecond=0)
    assert len(hours) == math.ceil((ms(end) - ms(hours[0])) / HOUR_MS)
    for hour in hours[1:-1]:
        observed = sum(truth.hours[hour].values())
        assert observed + truth.unobserved.get(hour, 0.0) == 3600.0
    assert (
        sum(truth.hours[hours[0]].values()) + truth.unobserved[hours[0]]
        == (ms(hours[0]) + HOUR_MS - ms(start)) / 1000
    )
    assert truth.unobserved[utc(2026, 3, 5, 11)] == 3600.0
    assert truth.unobserved[utc(2026, 3, 5, 10)] == 9 * 60 + 59.999
    assert truth.unobserved[utc(2026, 3, 6, 21)] == 0.001

    # The step function of the readings reproduces the truth to the millisecond.
    assert step_integral(readings, end, blackouts) == truth_ms(truth)
    # And the machine did a bit of everything that matters for billing.
    assert truth.seconds("running") > 10 * 3600 and truth.seconds("off") > 10 * 3600


def test_readings_are_whole_milliseconds_unique_and_contract_valid() -> None:
    start = utc(2026, 3, 2, 3)
    for spec in fleet(3, start=start, degrading=0):
        readings = MachineSim(spec, start, sample_interval_s=10.0).advance(
            start + timedelta(days=1)
        )
        stamps = [r.sample.ts for r in readings]
        assert stamps == sorted(stamps) and len(set(stamps)) == len(stamps)
        assert all(ts.microsecond % 1000 == 0 and ts.tzinfo is UTC for ts in stamps)
        # Built with model_construct for speed: they must still pass full validation.
        for reading in readings:
            assert Sample.model_validate(reading.sample.model_dump()) == reading.sample
            assert all(VALUE_NAME.fullmatch(name) for name in reading.sample.values)
        topic = telemetry_topic(spec.site, spec.line, spec.machine)
        message = Telemetry(
            machine=spec.machine,
            seq=0,
            samples=[r.sample for r in readings[:500]],
            counters=readings[499].counters,
        )
        assert decode_telemetry(topic, encode_telemetry(message))[1] == message


# --- shift calendar and daylight saving -----------------------------------------------------


def local_days(truth: GroundTruth) -> dict[date, list[datetime]]:
    days: dict[date, list[datetime]] = defaultdict(list)
    for hour in truth.hours:
        days[hour.astimezone(BERLIN).date()].append(hour)
    return days


def test_shift_calendar_follows_local_time_across_spring_dst() -> None:
    start = datetime(2026, 3, 23, tzinfo=BERLIN).astimezone(UTC)  # Monday 00:00 local
    end = datetime(2026, 3, 31, tzinfo=BERLIN).astimezone(UTC)  # 8 local days later
    sims = [MachineSim(spec, start) for spec in fleet(3, start=start, degrading=0)]
    for sim in sims:
        readings = sim.advance(end)
        truth = sim.truth
        days = local_days(truth)
        assert {day.isoformat(): len(hours) for day, hours in days.items()} == {
            "2026-03-23": 24,
            "2026-03-24": 24,
            "2026-03-25": 24,
            "2026-03-26": 24,
            "2026-03-27": 24,
            "2026-03-28": 24,
            "2026-03-29": 23,  # clocks go forward: a 23-hour day
            "2026-03-30": 24,
        }
        for day, hours in days.items():
            running = sum(truth.hours[h]["running"] for h in hours)
            if day.weekday() >= 5:
                assert running == 0.0, f"{sim.spec.machine} ran on {day}"
            else:
                assert running > 4 * 3600
        for reading in readings:
            local = reading.sample.ts.astimezone(BERLIN)
            if reading.sample.state == "running":
                assert local.weekday() < 5 and 6 <= local.hour < 22
        # Work starts at 06:00 local on both sides of the change: 05:00 UTC, then 04:00 UTC.
        first_on: dict[str, datetime] = {}
        for reading in readings:
            local_day = reading.sample.ts.astimezone(BERLIN).date().isoformat()
            if reading.sample.state != "off" and local_day not in first_on:
                first_on[local_day] = reading.sample.ts
        assert first_on["2026-03-27"] == utc(2026, 3, 27, 5)
        assert first_on["2026-03-30"] == utc(2026, 3, 30, 4)


def test_autumn_dst_day_has_25_hours_of_truth() -> None:
    start = datetime(2026, 10, 25, tzinfo=BERLIN).astimezone(UTC)  # Sunday 00:00 local
    end = datetime(2026, 10, 27, tzinfo=BERLIN).astimezone(UTC)
    sim = MachineSim(MachineSpec("pump-01", "pump", seed=3), start)
    readings = sim.advance(end)
    days = local_days(sim.truth)
    assert {day.isoformat(): len(hours) for day, hours in days.items()} == {
        "2026-10-25": 25,
        "2026-10-26": 24,
    }
    sunday = sum(sum(sim.truth.hours[h].values()) for h in days[start.astimezone(BERLIN).date()])
    assert sunday == 25 * 3600 and sim.truth.seconds("off") >= 25 * 3600 + 8 * 3600
    first_on = next(r.sample.ts for r in readings if r.sample.state != "off")
    assert first_on == utc(2026, 10, 26, 5)  # 06:00 CET


# --- the fleet week: speed, wear, healthy vibration, hour meters ----------------------------


@dataclass
class MachineStats:
    readings: int = 0
    max_vibration: float = 0.0
    first_over_4_5: datetime | None = None
    max_after_repair: float = 0.0
    state_at_failure: str | None = None
    meter_ok: bool = True
    last_meter: float = -1.0
    last_ts: datetime | None = None
    last_state: str | None = None
    kinds: set[str] = field(default_factory=set)


@dataclass
class FleetWeek:
    seconds: float
    sims: list[MachineSim]
    stats: dict[str, MachineStats]


@pytest.fixture(scope="module")
def fleet_week() -> FleetWeek:
    """12 machines, 7 simulated days at 10 s, generated a day at a time like a runner would."""
    start = utc(2026, 3, 2)  # Monday
    sims = [MachineSim(spec, start) for spec in fleet(12, seed=1, start=start)]
    stats = {sim.spec.machine: MachineStats() for sim in sims}
    elapsed = 0.0
    for day in range(1, 8):
        for sim in sims:
            began = time.perf_counter()
            readings = sim.advance(start + timedelta(days=day))
            elapsed += time.perf_counter() - began
            _collect(sim, readings, stats[sim.spec.machine])
    print(f"\nfleet week: {sum(s.readings for s in stats.values())} readings in {elapsed:.2f} s")
    return FleetWeek(elapsed, sims, stats)


def _collect(sim: MachineSim, readings: list[Reading], stats: MachineStats) -> None:
    failure = sim.failure_at
    repaired = sim.truth.repaired_at
    for reading in readings:
        sample = reading.sample
        vibration = sample.values["vibration_mm_s"]
        stats.max_vibration = max(stats.max_vibration, vibration)
        if failure is not None and sample.ts < failure and vibration > 4.5:
            stats.first_over_4_5 = stats.first_over_4_5 or sample.ts
        if failure is not None and sample.ts == failure:
            stats.state_at_failure = sample.state
        if repaired is not None and sample.ts >= repaired:
            stats.max_after_repair = max(stats.max_after_repair, vibration)
        meter = reading.counters["run_seconds_total"]
        if meter < stats.last_meter:
            stats.meter_ok = False
        if stats.last_state == "running" and stats.last_ts is not None:
            # The meter advanced by exactly the running time since the previous reading.
            expected = stats.last_meter + (sample.ts - stats.last_ts).total_seconds()
            stats.meter_ok &= abs(meter - expected) < 1e-6
        elif stats.last_ts is not None:
            stats.meter_ok &= meter == stats.last_meter
        stats.last_meter, stats.last_ts, stats.last_state = meter, sample.ts, sample.state
        stats.readings += 1


@pytest.mark.slow
def test_fleet_week_generates_fast(fleet_week: FleetWeek) -> None:
    total = sum(s.readings for s in fleet_week.stats.values())
    # 12 machines x 7 days x 8640 grid readings, plus one per state change.
    assert 12 * 7 * 8640 < total < 12 * 7 * 8640 * 1.02
    assert total == sum(sim.truth.samples for sim in fleet_week.sims)
    assert fleet_week.seconds < 30.0  # ~3 s on 2 cores; generous for a loaded CI machine


@pytest.mark.slow
def test_degrading_machine_crosses_alarm_before_failing(fleet_week: FleetWeek) -> None:
    degrading = [sim for sim in fleet_week.sims if sim.spec.degradation is not None]
    assert len(degrading) == 1
    sim = degrading[0]
    spec_failure = sim.spec.degradation.failure_at  # type: ignore[union-attr]
    truth = sim.truth
    assert truth.failure_at == spec_failure.replace(
        microsecond=spec_failure.microsecond // 1000 * 1000
    )
    assert utc(2026, 3, 2) + timedelta(days=3) <= spec_failure < utc(2026, 3, 2) + timedelta(days=6)
    stats = fleet_week.stats[sim.spec.machine]
    assert stats.first_over_4_5 is not None
    assert stats.first_over_4_5 < spec_failure - timedelta(hours=1)
    assert stats.max_vibration > 7.0  # ISO 10816-3 zone D before it breaks
    assert stats.state_at_failure == "fault"
    # Fault, then repair for repair_hours, then a healthy machine again.
    assert truth.repaired_at == truth.failure_at + timedelta(minutes=45, hours=8)
    assert 0 < stats.max_after_repair < 2.8
    assert sim.state_at(truth.failure_at + timedelta(minutes=45)) == "maintenance"
    assert truth.degradation_onset == sim.spec.degradation.onset  # type: ignore[union-attr]


@pytest.mark.slow
def test_healthy_machines_stay_below_2_8_mm_s(fleet_week: FleetWeek) -> None:
    healthy = [sim for sim in fleet_week.sims if sim.spec.degradation is None]
    assert len(healthy) == 11
    maxima = {sim.spec.machine: fleet_week.stats[sim.spec.machine].max_vibration for sim in healthy}
    assert all(0.5 < peak < 2.8 for peak in maxima.values()), maxima
    assert {sim.spec.kind for sim in healthy} == {"cnc_mill", "pump", "compressor"}


@pytest.mark.slow
def test_hour_meters_are_monotonic_and_count_true_running_seconds(fleet_week: FleetWeek) -> None:
    for sim in fleet_week.sims:
        stats = fleet_week.stats[sim.spec.machine]
        truth = sim.truth
        assert stats.meter_ok, sim.spec.machine
        assert truth.run_seconds_start >= 200 * 3600
        # Meter at the last reading + running time after it = start value + true running time.
        tail = (truth.end - stats.last_ts).total_seconds() if stats.last_state == "running" else 0  # type: ignore[operator]
        assert stats.last_meter + tail == pytest.approx(
            truth.run_seconds_start + truth.seconds("running"), abs=1e-6
        )


# --- blackouts ------------------------------------------------------------------------------


def test_blackouts_have_no_readings_and_resume_at_their_end() -> None:
    start = utc(2026, 3, 3, 5)
    blackouts = (
        (start, start + timedelta(minutes=3, milliseconds=7)),  # covers the start
        (utc(2026, 3, 3, 9, 0, 4), utc(2026, 3, 3, 12, 59, 58)),
        (utc(2026, 3, 4, 21, 0), utc(2026, 3, 5, 7, 0)),  # over a shift end and start
    )
    spec = MachineSpec("comp-09", "compressor", seed=9, blackouts=blackouts)
    sim = MachineSim(spec, start, sample_interval_s=5.0)
    readings = sim.advance(start + timedelta(days=2, hours=3))
    stamps = [r.sample.ts for r in readings]
    for lo, hi in blackouts:
        assert not [ts for ts in stamps if lo <= ts < hi]
        assert hi in stamps  # the gateway is back: a reading exactly at the end
        assert readings[stamps.index(hi)].sample.state == sim.state_at(hi)
    assert stamps[0] == blackouts[0][1]
    truth = sim.truth
    assert sum(truth.unobserved.values()) == pytest.approx(
        sum((hi - lo).total_seconds() for lo, hi in blackouts), abs=1e-9
    )
    assert truth.unobserved[utc(2026, 3, 3, 10)] == 3600.0
    assert step_integral(readings, truth.end, blackouts) == truth_ms(truth)  # type: ignore[arg-type]


# --- rush orders ----------------------------------------------------------------------------


def test_a_rush_runs_without_a_break_and_changes_nothing_before_it() -> None:
    start = utc(2026, 3, 3, 5)
    rush = (utc(2026, 3, 3, 19, 30, 0, 250), utc(2026, 3, 3, 23, 30))  # over the shift end
    plain = MachineSim(MachineSpec("comp-09", "compressor", seed=9), start, sample_interval_s=5.0)
    spec = MachineSpec("comp-09", "compressor", seed=9, rush=rush)
    sim = MachineSim(spec, start, sample_interval_s=5.0)
    readings = sim.advance(utc(2026, 3, 4, 12))
    before = [start + timedelta(seconds=20 * i) for i in range(int(14.5 * 180))]
    assert [sim.state_at(t) for t in before] == [plain.state_at(t) for t in before]
    # Without it the machine idles and goes off in that span; with it, it runs throughout.
    inside = [r for r in readings if rush[0] <= r.sample.ts < rush[1]]
    assert {plain.state_at(r.sample.ts) for r in inside} >= {"idle", "off"}
    assert {r.sample.state for r in inside} == {"running"}
    assert sim.state_at(rush[1]) in {"off", "idle"}  # after it, the calendar again (night)
    assert step_integral(readings, sim.truth.end) == truth_ms(sim.truth)  # type: ignore[arg-type]


def test_a_bearing_failure_cuts_into_a_rush() -> None:
    start = utc(2026, 3, 3, 5)
    failure = utc(2026, 3, 3, 21)
    wear = Degradation(onset=failure - timedelta(hours=2), days_to_failure=2 / 24)
    rush = (utc(2026, 3, 3, 20), utc(2026, 3, 4, 2))
    spec = MachineSpec("pump-03", "pump", seed=3, degradation=wear, rush=rush)
    sim = MachineSim(spec, start, sample_interval_s=10.0)
    assert sim.state_at(failure - timedelta(seconds=1)) == "running"
    assert sim.state_at(failure) == "fault"
    assert sim.state_at(failure + timedelta(minutes=50)) == "maintenance"
    with pytest.raises(ValueError, match=r"rush .* is empty"):
        MachineSpec("pump-03", "pump", rush=(rush[1], rush[0]))
    with pytest.raises(ValueError, match="rush start must be a timezone-aware datetime"):
        MachineSpec("pump-03", "pump", rush=(datetime(2026, 3, 3), rush[1]))


# --- ground-truth file, clock, spec checks --------------------------------------------------


def test_ground_truth_file_round_trips_byte_identically(tmp_path: Path) -> None:
    start = utc(2026, 3, 2)
    sims = [
        MachineSim(spec, start, sample_interval_s=60.0)
        for spec in fleet(4, start=start, degrading=1)
    ]
    for sim in sims:
        sim.advance(start + timedelta(days=6))
    truths = [sim.truth for sim in sims]
    path = tmp_path / "truth.json"
    write_ground_truth(path, truths)
    assert read_ground_truth(path) == truths
    again = tmp_path / "again.json"
    write_ground_truth(again, read_ground_truth(path))
    assert again.read_bytes() == path.read_bytes()

    data = json.loads(path.read_text())
    assert data["format"] == "runhours-ground-truth" and data["version"] == 1
    first = data["machines"][0]
    assert first["hours"][0] == {
        "hour": "2026-03-02T00:00:00.000Z",
        "off": 3600.0,
        "idle": 0.0,
        "running": 0.0,
        "fault": 0.0,
        "maintenance": 0.0,
        "unobserved": 0.0,
        "scheduled": 0.0,
        "parts_total": 0,  # a CNC mill counts parts
        "parts_good": 0,
    }
    assert first["ideal_cycle_s"] == 90.0 and first["parts_total_start"] > first["parts_good_start"]
    assert "parts_total" not in data["machines"][1]["hours"][0]  # a pump makes none
    assert len(first["hours"]) == 6 * 24
    failing = [m for m in data["machines"] if m["failure_at"] is not None]
    assert len(failing) == 1 and failing[0]["failure_at"].endswith("Z")

    (tmp_path / "bad.json").write_text('{"machines": []}')
    with pytest.raises(ValueError, match="not a ground-truth file"):
        read_ground_truth(tmp_path / "bad.json")


def test_sim_clock_paced_and_unpaced() -> None:
    start = utc(2026, 3, 2, 6)
    fast = SimClock(start, None)
    began = time.monotonic()
    asyncio.run(fast.sleep_until(start + timedelta(days=3)))
    assert time.monotonic() - began < 0.5
    assert fast.now() == start + timedelta(days=3)

    paced = SimClock(start, 36_000.0)  # ten simulated hours per wall second
    began = time.monotonic()
    asyncio.run(paced.sleep_until(start + timedelta(hours=2)))  # 0.2 s of wall time
    waited = time.monotonic() - began
    assert 0.15 < waited < 1.0
    assert start + timedelta(hours=2) <= paced.now() < start + timedelta(hours=12)


def test_specs_reject_what_would_break_the_simulation() -> None:
    naive = datetime(2026, 3, 2)
    with pytest.raises(ValueError, match="kind must be one of cnc_mill, pump, compressor"):
        MachineSpec("m1", "lathe")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="unknown IANA time zone"):
        MachineSpec("m1", "pump", timezone="Mars/Olympus")
    with pytest.raises(ValueError, match="blackout start must be a timezone-aware datetime"):
        MachineSpec("m1", "pump", blackouts=((naive, naive),))
    with pytest.raises(ValueError, match="machine"):
        MachineSpec("bad id", "pump")
    with pytest.raises(ValueError, match="days_to_failure must be > 0"):
        Degradation(onset=utc(2026, 3, 2), days_to_failure=0)
    with pytest.raises(ValueError, match="timezone-aware"):
        MachineSim(MachineSpec("m1", "pump"), naive)
    with pytest.raises(ValueError, match="sample_interval_s"):
        MachineSim(MachineSpec("m1", "pump"), utc(2026, 3, 2), sample_interval_s=0)


# --- wear profiles --------------------------------------------------------------------------


def test_wear_profiles_shape_the_slow_phase_then_run_away() -> None:
    onset = utc(2026, 3, 3)
    span = timedelta(days=3)

    def curve(profile: str) -> Callable[[float], float]:
        wear = WearCurve(
            ms(onset),
            ms(onset + span),
            profile,  # type: ignore[arg-type]
            level=0.05,
            knee=0.6,
            noise=0.0,
            rng=np.random.default_rng(1),
        )
        return lambda p: float(wear.severity(np.asarray([ms(onset + p * span)]))[0])

    linear, exponential, step = curve("linear"), curve("exponential"), curve("step")
    accelerating, intermittent = curve("accelerating"), curve("intermittent")
    for s in (linear, exponential, step, accelerating, intermittent):
        assert s(-0.01) == 0.0 and s(1.0) == 0.0  # healthy before the onset, new after failure
        assert s(0.999) > 0.99  # every profile ends in the run-away to the failure
    assert linear(0.3) == pytest.approx(0.025) and linear(0.6) == pytest.approx(0.05)
    assert exponential(0.3) < 0.25 * 0.05 < exponential(0.55) < 0.05  # slow, then faster
    assert step(0.001) == step(0.59) == 0.05  # a jump at the onset, flat afterwards
    assert accelerating(0.5) == 0.125  # p³, the profile before profiles existed
    assert linear(0.8) == pytest.approx(0.05 + 0.95 * 0.25)  # the run-away, quadratic
    episodes = {round(intermittent(i / 1000), 6) for i in range(600)}
    assert episodes == {0.0, 0.05}  # on and off, hours at a time


def test_fleet_profiles_are_drawn_recorded_in_the_truth_and_change_nothing_by_default(
    tmp_path: Path,
) -> None:
    start = utc(2026, 3, 2)
    assert {s.degradation.profile for s in fleet(12, start=start) if s.degradation} == {
        "accelerating"
    }
    drawn = [
        spec.degradation
        for seed in range(1, 21)
        for spec in fleet(12, start=start, seed=seed, profiles=WEAR_PROFILES)
        if spec.degradation is not None
    ]
    assert {d.profile for d in drawn} == set(WEAR_PROFILES)
    assert all(0.03 <= d.level <= 0.07 and 0.55 <= d.knee <= 0.7 for d in drawn)
    # Only the profile draws differ: failure times are those of the default fleet.
    plain = [s.degradation for s in fleet(12, start=start, seed=3) if s.degradation]
    mixed = [
        s.degradation
        for s in fleet(12, start=start, seed=3, profiles=WEAR_PROFILES)
        if s.degradation
    ]
    assert [d.failure_at for d in plain] == [d.failure_at for d in mixed]

    degradation = Degradation(
        onset=start + timedelta(hours=6), days_to_failure=2.0, profile="step", noise=0.2
    )
    sim = MachineSim(MachineSpec("pump-01", "pump", seed=4, degradation=degradation), start)
    sim.advance(start + timedelta(days=3))
    truth = sim.truth
    assert truth.degradation_profile == "step"
    assert truth.runaway_at == start + timedelta(hours=6) + 0.6 * timedelta(days=2)
    write_ground_truth(tmp_path / "truth.json", [truth])
    assert read_ground_truth(tmp_path / "truth.json") == [truth]
    with pytest.raises(ValueError, match="profile must be one of accelerating, linear"):
        Degradation(onset=start, days_to_failure=1, profile="sudden")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="fleet profiles: 'sudden' is not one of"):
        fleet(3, start=start, profiles=("sudden",))  # type: ignore[arg-type]
