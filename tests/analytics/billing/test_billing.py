"""Billing, hand-computed: each case writes samples, bills a period and checks the amounts.

Every case is billed twice, from the hourly rollups and from raw samples, and the two
exports must be byte-identical (rollup path == ``--from-raw`` path).
"""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

from store import InfluxClient, Point
from tests.support.billing import OCTOBER, amounts, bill, contract, machine
from tests.support.telemetry import HOUR, MINUTE, berlin, sample, steady


def test_a_whole_dst_month_in_berlin_is_745_hours(influx: InfluxClient) -> None:
    # Running all of October 2026 in Berlin, a sample every 5 minutes: 745 h, not 744.
    influx.write(steady("cnc-01", "running", OCTOBER.start, OCTOBER.end + HOUR))
    s = bill(influx, contract(machine("cnc-01")))
    assert amounts(s) == [("usage", "cnc-01", "745.0", "42.50", "31662.50")]  # 745 × 42.50
    assert s.lines[0].metered_hours == Decimal("745.0000")
    assert s.lines[0].coverage == Decimal("100.00")
    assert s.total == Decimal("31662.50")
    assert s.period_start.isoformat() == "2026-10-01T00:00:00+02:00"
    assert s.period_end.isoformat() == "2026-11-01T00:00:00+01:00"


def test_a_state_change_exactly_on_the_period_boundary(influx: InfluxClient) -> None:
    # Running 20:00-24:00 on 30 September, idle from exactly 00:00 1 October, running
    # again 02:00-04:00. September gets 4 h, October 2 h; nothing leaks across.
    points = steady("pump-01", "running", berlin(2026, 9, 30, 20), OCTOBER.start)
    points += steady("pump-01", "idle", OCTOBER.start, berlin(2026, 10, 1, 2))
    points += steady("pump-01", "running", berlin(2026, 10, 1, 2), berlin(2026, 10, 1, 4))
    points += [sample("pump-01", berlin(2026, 10, 1, 4), "off")]
    influx.write(points)
    october = bill(influx, contract(machine("pump-01")), "2026-10")
    assert amounts(october) == [("usage", "pump-01", "2.0", "42.50", "85.00")]  # 2 × 42.50
    september = bill(influx, contract(machine("pump-01")), "2026-09")
    assert amounts(september) == [("usage", "pump-01", "4.0", "42.50", "170.00")]


def test_a_gap_longer_than_max_gap_is_not_billed(influx: InfluxClient) -> None:
    # Running 08:00-12:00 on 5 October, but silent from the 08:50 sample until 10:00:
    # 08:00-08:55 (the last sample holds 5 min) + 10:00-12:00 = 175 min = 2.91666… h.
    day = berlin(2026, 10, 5, 8)
    points = steady("comp-01", "running", day, day + 55 * MINUTE)
    points += steady("comp-01", "running", day + 2 * HOUR, day + 4 * HOUR)
    points += [sample("comp-01", day + 4 * HOUR, "idle")]
    influx.write(points)
    s = bill(influx, contract(machine("comp-01")))
    assert amounts(s) == [("usage", "comp-01", "2.9", "42.50", "123.25")]  # 2.9 × 42.50
    assert s.lines[0].metered_hours == Decimal("2.9167")
    # known: 175 min running + 5 min idle = 180 min of 745 h = 0.40268…% → 0.40
    assert s.lines[0].coverage == Decimal("0.40")


def test_counter_metering_handles_a_meter_reset(influx: InfluxClient) -> None:
    # The hour meter reads 1000 s at 08:00 (baseline), 4600 s at 09:00, is reset and reads
    # 100 s at 09:30, then 3700 s at 10:30: 3600 + 100 + 3600 = 7300 s = 2.02777… h.
    t = berlin(2026, 10, 6, 8)
    points = steady("comp-02", "running", t, t + 150 * MINUTE)
    for offset, value in [(0, 1000.0), (60, 4600.0), (90, 100.0), (150, 3700.0)]:
        points.append(sample("comp-02", t + offset * MINUTE, "running", counter=value))
    points.append(sample("comp-02", t + 150 * MINUTE, "off"))
    influx.write(points)
    s = bill(influx, contract(machine("comp-02"), method='"counter"', rate_per_hour='"50.00"'))
    assert amounts(s) == [("usage", "comp-02", "2.0", "50.00", "100.00")]  # 2.0 × 50
    assert s.lines[0].metered_hours == Decimal("2.0278")
    assert s.lines[0].method == "counter"
    assert any("reset" in note for note in s.notes)
    # states say 2.5 h running: 0.47 h more than the meter, beyond 1% + 60 s.
    assert any("hour meter 2.03 h vs running 2.50 h" in note for note in s.notes)


def test_machines_added_and_removed_mid_month_are_billed_for_their_part(
    influx: InfluxClient,
) -> None:
    # Both machines run from 14 Oct 00:00 to 16 Oct 00:00 local (48 h). cnc-02 joins the
    # contract on 15 Oct (24 h billed); cnc-03 leaves it on 15 Oct (24 h billed).
    for m in ("cnc-02", "cnc-03"):
        influx.write(steady(m, "running", berlin(2026, 10, 14), berlin(2026, 10, 16)))
    text = contract(machine("cnc-02", "from = 2026-10-15") + machine("cnc-03", "to = 2026-10-15"))
    s = bill(influx, text)
    assert amounts(s) == [
        ("usage", "cnc-02", "24.0", "42.50", "1020.00"),  # 24 × 42.50
        ("usage", "cnc-03", "24.0", "42.50", "1020.00"),
    ]
    # cnc-02's window is 15 Oct - 1 Nov: 17 days + the DST hour = 409 h; 24/409 = 5.867…%
    assert s.lines[0].coverage == Decimal("5.86")
    # cnc-03's window is 1-15 Oct: 336 h; known 24 h (14 Oct) → 7.142…%
    assert s.lines[1].coverage == Decimal("7.14")


def test_effective_times_with_different_offsets_are_compared_as_instants(
    influx: InfluxClient,
) -> None:
    # from 10:00+02:00 to 09:30Z (= 11:30+02:00): 1.5 h, although 09:30 < 10:00 on paper.
    influx.write(steady("cnc-04", "running", berlin(2026, 10, 5, 8), berlin(2026, 10, 5, 14)))
    term = "from = 2026-10-05T10:00:00+02:00\nto = 2026-10-05T09:30:00Z"
    s = bill(influx, contract(machine("cnc-04", term)))
    assert amounts(s) == [("usage", "cnc-04", "1.5", "42.50", "63.75")]  # 1.5 × 42.50
    assert s.lines[0].coverage == Decimal("100.00")
    # A local time and a UTC one: from 10:00 local (08:00Z) to 09:30Z is 1.5 h too.
    term = "from = 2026-10-05T10:00:00\nto = 2026-10-05T09:30:00Z"
    s = bill(influx, contract(machine("cnc-04", term)))
    assert amounts(s) == [("usage", "cnc-04", "1.5", "42.50", "63.75")]


def test_graduated_tiers_per_machine(influx: InfluxClient) -> None:
    # 250.04 h running → 250.0 billable: 100 h at 40 + 100 h at 35 + 50 h at 30 = 9000.
    t0 = OCTOBER.start
    points = steady("pump-02", "running", t0, t0 + 250 * HOUR + MINUTE)  # ends with 250:00
    points.append(sample("pump-02", t0 + 250 * HOUR + timedelta(seconds=144), "idle"))
    influx.write(points)
    tiers = (
        '[[contract.tier]]\nup_to_hours = "100"\nrate_per_hour = "40.00"\n'
        '[[contract.tier]]\nup_to_hours = "200"\nrate_per_hour = "35.00"\n'
        '[[contract.tier]]\nrate_per_hour = "30.00"\n'
    )
    s = bill(influx, contract(machine("pump-02") + tiers, rate_per_hour=""))
    assert amounts(s) == [
        ("usage", "pump-02", "100.0", "40.00", "4000.00"),
        ("usage", "pump-02", "100.0", "35.00", "3500.00"),
        ("usage", "pump-02", "50.0", "30.00", "1500.00"),
    ]
    assert [str(line.metered_hours) for line in s.lines] == ["100.0000", "100.0000", "50.0400"]
    assert s.total == Decimal("9000.00")


def test_over_use_above_the_allowance_costs_the_multiplier(influx: InfluxClient) -> None:
    # 120 h with an allowance of 100 h at 40.00, ×1.5 above: 4000 + 20 × 60.00 = 5200.
    t0 = OCTOBER.start
    influx.write(steady("comp-03", "running", t0, t0 + 120 * HOUR))
    terms = {"rate_per_hour": '"40.00"', "allowance_hours": '"100"', "overuse_multiplier": '"1.5"'}
    s = bill(influx, contract(machine("comp-03"), **terms))
    assert amounts(s) == [
        ("usage", "comp-03", "100.0", "40.00", "4000.00"),
        ("usage", "comp-03", "20.0", "60.000", "1200.00"),
    ]
    assert s.total == Decimal("5200.00")


def test_minimum_hours_true_up(influx: InfluxClient) -> None:
    # 60 h used, 100 h minimum: usage 60 × 42.50 = 2550 + true-up 40 × 42.50 = 1700.
    influx.write(steady("cnc-04", "running", OCTOBER.start, OCTOBER.start + 60 * HOUR))
    s = bill(influx, contract(machine("cnc-04"), minimum_hours='"100"'))
    assert amounts(s) == [
        ("usage", "cnc-04", "60.0", "42.50", "2550.00"),
        ("true_up", "", "40.0", "42.50", "1700.00"),
    ]
    assert s.lines[1].method == "minimum"
    assert s.total == Decimal("4250.00")


def test_rounding_increment_and_modes(influx: InfluxClient) -> None:
    # Exactly 1.25 h running (75 min), and 1.21 h on another machine (72.6 min).
    t0 = berlin(2026, 10, 7, 6)
    points: list[Point] = steady("pump-03", "running", t0, t0 + 75 * MINUTE)
    points.append(sample("pump-03", t0 + 75 * MINUTE, "idle"))
    points += steady("pump-04", "running", t0, t0 + 75 * MINUTE)
    points.append(sample("pump-04", t0 + timedelta(seconds=72 * 60 + 36), "idle"))
    influx.write(points)
    both = machine("pump-03") + machine("pump-04")
    expected = {  # (pump-03 1.25 h, pump-04 1.21 h) at 42.50
        "half_up": [("1.3", "55.25"), ("1.2", "51.00")],
        "half_even": [("1.2", "51.00"), ("1.2", "51.00")],
        "up": [("1.3", "55.25"), ("1.3", "55.25")],
        "down": [("1.2", "51.00"), ("1.2", "51.00")],
    }
    for mode, rows in expected.items():
        s = bill(influx, contract(both, rounding_mode=f'"{mode}"'))
        assert [(a[2], a[4]) for a in amounts(s)] == rows, mode
    # A quarter-hour increment: 1.25 h stays 1.25; 1.21 h → 1.25 (half_up).
    s = bill(influx, contract(both, rounding_hours='"0.25"'))
    assert [(a[2], a[4]) for a in amounts(s)] == [("1.25", "53.13"), ("1.25", "53.13")]


def test_a_stale_meter_value_restored_is_a_glitch_not_a_reset(influx: InfluxClient) -> None:
    # Issue case: the hour meter reads 36,000,000 s, 36,000,010 s, then 36,000,009.999 s
    # (a PLC restoring a slightly stale value after a power cut). Before: the drop was
    # a reset, billing 36,000,009.999 s more: 10000.0056 h = 425000.00. Now: the glitch
    # bills nothing and is listed on the line; the meter advanced 10 s = 0.0028 h.
    t = berlin(2026, 10, 6, 8)
    points = steady("comp-02", "running", t, t + 30 * MINUTE)
    for offset, value in [(0, 36_000_000.0), (10, 36_000_010.0), (20, 36_000_009.999)]:
        points.append(sample("comp-02", t + offset * MINUTE, "running", counter=value))
    influx.write(points)
    s = bill(influx, contract(machine("comp-02"), method='"counter"'))
    assert amounts(s) == [("usage", "comp-02", "0.0", "42.50", "0.00")]
    assert s.lines[0].metered_hours == Decimal("0.0028")
    assert s.lines[0].counter_anomalies == (
        "2026-10-06T08:20:00+02:00 glitch: meter 36000010.000 s → 36000009.999 s, billed 0.000 s",
    )
    assert any("hour meter 1 glitch in the period" in note for note in s.notes)
