"""The usage engine: step semantics, max_gap, heartbeats, boundaries, hour meter.

Pure cases with hand-computed milliseconds, then the same engine over real InfluxDB.
"""

from __future__ import annotations

import itertools
from datetime import timedelta

import numpy as np
import pytest

from analytics.counters import CounterTolerance, counter_by_bucket, counter_mismatch
from analytics.periods import bucket_edges, calendar_period
from analytics.rollups import fleet_usage
from analytics.usage import (
    NO_STATE,
    STATE_CODE,
    effective_states,
    machine_usage,
    state_ms_by_bucket,
)
from store import InfluxClient
from tests.support.telemetry import BERLIN, MINUTE, berlin, sample, steady, utc

RUN, IDLE, FAULT = STATE_CODE["running"], STATE_CODE["idle"], STATE_CODE["fault"]
GAP = 300_000  # max_gap 5 min in ms
H = 3_600_000


def arrays(rows: list[tuple[int, int]]) -> tuple[np.ndarray, np.ndarray]:
    return np.array([r[0] for r in rows], np.int64), np.array([r[1] for r in rows], np.int8)


def by_state(state_ms: np.ndarray, k: int) -> dict[str, int]:
    return {s: int(state_ms[k, c]) for s, c in STATE_CODE.items() if state_ms[k, c]}


def test_state_holds_until_next_sample_and_is_cut_exactly_at_edges() -> None:
    # running at 0, idle at 90 s, running at 200 s; samples every <= 5 min up to 10 min.
    ts, codes = arrays([(0, RUN), (90_000, IDLE), (200_000, RUN), (480_000, RUN)])
    state_ms, known = state_ms_by_bucket(ts, codes, np.array([0, 60_000, 600_000]), GAP)
    assert by_state(state_ms, 0) == {"running": 60_000}
    # 60..90 s running, 90..200 s idle, 200..600 s running (the last sample holds to 780 s,
    # cut at the edge).
    assert by_state(state_ms, 1) == {"running": 30_000 + 400_000, "idle": 110_000}
    assert known.tolist() == [60_000, 540_000]


def test_state_change_exactly_on_a_boundary_belongs_to_the_next_bucket() -> None:
    rows = [(m * 60_000, RUN) for m in range(0, 60, 5)] + [(H, IDLE), (H + 240_000, IDLE)]
    ts, codes = arrays(rows)
    state_ms, _ = state_ms_by_bucket(ts, codes, np.array([0, H, 2 * H]), GAP)
    assert by_state(state_ms, 0) == {"running": H}
    assert by_state(state_ms, 1) == {"idle": 240_000 + GAP}


def test_a_gap_longer_than_max_gap_is_unknown_and_never_billed() -> None:
    # running samples every 5 min 0..55 min, silence until 90 min, then every 5 min again.
    rows = [(m * 60_000, RUN) for m in range(0, 60, 5)] + [
        (m * 60_000, RUN) for m in range(90, 120, 5)
    ]
    ts, codes = arrays(rows)
    state_ms, known = state_ms_by_bucket(ts, codes, np.array([0, 2 * H]), GAP)
    # known: 0..60 min (the 55-min sample holds 5 min) + 90..120 min = 90 min of 120.
    assert known.tolist() == [90 * 60_000]
    assert by_state(state_ms, 0) == {"running": 90 * 60_000}


def test_exactly_max_gap_apart_is_still_continuous() -> None:
    ts, codes = arrays([(0, RUN), (GAP, RUN)])
    _, known = state_ms_by_bucket(ts, codes, np.array([0, 2 * GAP]), GAP)
    assert known.tolist() == [2 * GAP]


def test_heartbeats_carry_the_state_but_not_across_a_gap() -> None:
    # running at 0, value-only heartbeats every minute to 10 min, silence to 20 min,
    # a heartbeat at 20 min (unknown: the chain broke), idle stated at 22 min.
    rows = [(0, RUN)] + [(m * 60_000, NO_STATE) for m in range(1, 11)]
    rows += [(20 * 60_000, NO_STATE), (22 * 60_000, IDLE)]
    ts, codes = arrays(rows)
    eff = effective_states(ts, codes, GAP, 24 * H)
    assert eff.tolist() == [RUN] * 11 + [NO_STATE, IDLE]
    state_ms, known = state_ms_by_bucket(ts, codes, np.array([0, 30 * 60_000]), GAP)
    # running 0..15 min (last heartbeat at 10 holds 5 min), unknown 15..22, idle 22..27.
    assert by_state(state_ms, 0) == {"running": 15 * 60_000, "idle": GAP}
    assert known.tolist() == [20 * 60_000]


def test_heartbeats_carry_a_state_for_at_most_the_carry_horizon() -> None:
    rows = [(0, RUN)] + [(m * 60_000, NO_STATE) for m in range(1, 26 * 60)]
    ts, codes = arrays(rows)
    _state_ms, known = state_ms_by_bucket(ts, codes, np.array([0, 26 * H]), GAP, 24 * H)
    # the heartbeat at exactly 24 h still carries (inclusive) and holds one minute.
    assert known.tolist() == [24 * H + 60_000]


def test_counter_deltas_handle_a_reset() -> None:
    # readings (s): 1000 an hour before; 4600 and 5200 in hour 0; reset to 100, then 1900
    # in hour 1. Each advance fits the time elapsed since the reading before it.
    ts = np.array([0, 600_000, H + 60_000, H + 1_860_000], np.int64)
    values = np.array([4_600_000, 5_200_000, 100_000, 1_900_000], np.int64)
    meter = counter_by_bucket(ts, values, (-H, 1_000_000), np.array([0, H, 2 * H, 3 * H]))
    assert meter.billed_ms.tolist() == [4_200_000, 1_900_000, 0]
    assert meter.counts[:, 0].tolist() == [0, 1, 0]  # resets
    assert meter.defined.tolist() == [True, True, False]


def test_first_ever_reading_only_sets_the_baseline() -> None:
    meter = counter_by_bucket(
        np.array([10, 2_000], np.int64), np.array([5_000, 6_000], np.int64), None, np.array([0, H])
    )
    assert meter.billed_ms.tolist() == [1_000] and meter.defined.tolist() == [True]


def test_counter_mismatch_tolerance_is_relative_plus_absolute() -> None:
    tol = CounterTolerance()  # 1% + 60 s
    assert not counter_mismatch(10_000 + 160, 10_000, tol)  # 160 = 100 + 60: allowed
    assert counter_mismatch(10_000 + 161, 10_000, tol)
    assert not counter_mismatch(None, 10_000, tol)


def test_berlin_october_has_745_hours_and_its_days_are_cut_locally() -> None:
    october = calendar_period("2026-10", BERLIN)
    assert october.hours == 745
    edges = bucket_edges(october.start, october.end, "day", BERLIN)
    lengths = {(b.timestamp() - a.timestamp()) / 3600 for a, b in itertools.pairwise(edges)}
    assert len(edges) == 32 and lengths == {24.0, 25.0}
    assert edges[25].isoformat() == "2026-10-26T00:00:00+01:00"


def test_machine_usage_from_influx(influx: InfluxClient) -> None:
    # A sample 2 min before the start carries "running" into the interval; the hour meter
    # reports 1800 s across it.
    start, end = utc(2026, 10, 5, 8), utc(2026, 10, 5, 9)
    points = [sample("cnc-01", start - 2 * MINUTE, "running", counter=1000.0)]
    points += steady("cnc-01", "running", start + MINUTE, start + 30 * MINUTE)
    points += [sample("cnc-01", start + 30 * MINUTE, "idle", counter=2800.0)]
    points += steady("cnc-01", "idle", start + 31 * MINUTE, start + 50 * MINUTE)
    points += [sample("cnc-01", start + 50 * MINUTE, None, values={"spindle_current_a": 0.5})]
    influx.write(points)
    usage = machine_usage(influx, "cnc-01", start, end)
    assert usage.state_seconds == {
        "off": 0.0,
        "idle": 1200.0 + 300.0,  # 30..50 min, and the heartbeat at 50 holds idle for 5 min
        "running": 1800.0,
        "fault": 0.0,
        "maintenance": 0.0,
    }
    assert usage.known_seconds == 3300.0
    assert usage.coverage == pytest.approx(3300 / 3600)
    assert usage.counter_seconds == 1800.0
    assert not usage.counter_reset and not usage.counter_mismatch()


def test_fleet_usage_by_local_day_across_the_dst_change(influx: InfluxClient) -> None:
    # Running all of Sunday 25 October 2026 in Berlin: a 25-hour local day.
    day, next_day = berlin(2026, 10, 25), berlin(2026, 10, 26)
    influx.write(steady("pump-01", "running", day, next_day + timedelta(hours=2)))
    rows = fleet_usage(influx, day, next_day, by="day", tz=BERLIN, from_raw=True)
    assert len(rows) == 1
    assert rows[0].state_seconds["running"] == 25 * 3600
    assert rows[0].coverage == 1.0
    assert rows[0].start == day and rows[0].end.utcoffset() == timedelta(hours=1)
