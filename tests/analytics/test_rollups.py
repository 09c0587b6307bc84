"""Hourly rollups: same hours as raw samples, kept current from the ingest's touched log."""

from __future__ import annotations

import fcntl
import threading
import time
from datetime import timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import numpy as np
import pytest

from analytics.periods import bucket_edges, to_ms
from analytics.rollups import (
    RefreshState,
    read_rollups,
    rebuild_rollups,
    refresh_rollups,
    usage_series,
)
from analytics.usage import UsageSeries, raw_usage_series
from store import InfluxClient, Point, encode_points
from tests.support.telemetry import (
    BERLIN,
    HOUR,
    MINUTE,
    ingest,
    markers,
    sample,
    steady,
    utc,
)
from wire import STATES, from_epoch_ms

START = utc(2026, 10, 24, 20)  # spans the Berlin DST change (25 Oct, 03:00 → 02:00)
END = START + timedelta(days=2)


def messy_history(machine: str, seed: int) -> list[Point]:
    """Random states changing at ms precision, samples every 20-90 s, heartbeats without
    a state, gaps beyond max_gap, an hour meter with resets, glitches and jumps."""
    rng = np.random.default_rng(seed)
    points: list[Point] = []
    t = to_ms(START) - 10 * 60_000
    state = "running"
    meter = 5_000.0
    while t < to_ms(END) + 10 * 60_000:
        if rng.random() < 0.08:
            state = str(rng.choice(STATES))
        ts = from_epoch_ms(int(t))
        stated = rng.random() < 0.6
        counter = None
        if rng.random() < 0.3:
            draw = rng.random()
            if draw < 0.01:
                meter = 30.0  # a reset
            elif draw < 0.03:
                meter -= 0.5  # a stale value restored
            else:
                meter += float(rng.integers(0, 90))  # sometimes more than elapsed: a jump
            counter = meter
        points.append(sample(machine, ts, state if stated else None, counter=counter))
        step = int(rng.integers(20_000, 90_000)) + int(rng.integers(0, 1000))
        if rng.random() < 0.01:
            step += int(rng.integers(6, 120)) * 60_000  # an outage longer than max_gap
        t += step
    return points


def assert_same(a: dict[str, UsageSeries], b: dict[str, UsageSeries]) -> None:
    assert a.keys() == b.keys()
    for machine in a:
        x, y = a[machine], b[machine]
        assert np.array_equal(x.edges_ms, y.edges_ms)
        assert np.array_equal(x.state_ms, y.state_ms), machine
        assert np.array_equal(x.known_ms, y.known_ms), machine
        assert np.array_equal(x.counter_ms, y.counter_ms), machine
        assert np.array_equal(x.counter_defined, y.counter_defined), machine
        assert np.array_equal(x.counter_counts, y.counter_counts), machine
        assert x.counter_events == y.counter_events, machine
        assert np.array_equal(x.gap_count, y.gap_count), machine
        assert np.array_equal(x.gap_at_start, y.gap_at_start), machine
        assert np.array_equal(x.gap_at_end, y.gap_at_end), machine


MACHINES = ["cnc-01", "pump-01", "comp-01"]


@pytest.fixture
def history(influx: InfluxClient) -> dict[str, list[Point]]:
    data = {m: messy_history(m, seed) for seed, m in enumerate(MACHINES)}
    influx.write([p for points in data.values() for p in points])
    return data


def test_rollups_give_exactly_the_raw_hours(
    influx: InfluxClient, history: dict[str, list[Point]]
) -> None:
    written = rebuild_rollups(influx, START, END)
    assert written == 3 * 48
    # The rollups carry the machines' tags, so dashboards can group them by site and line.
    series = influx.query_series('SHOW SERIES FROM "usage_hourly"')
    assert sorted(row[0] for s in series for row in s.values) == [
        f"usage_hourly,line=line-a,machine={m},site=plant1" for m in sorted(MACHINES)
    ]
    for by, tz in [("hour", BERLIN), ("day", BERLIN), (None, BERLIN)]:
        edges = [to_ms(e) for e in bucket_edges(START, END, by, tz)]  # type: ignore[arg-type]
        from_rollups = read_rollups(influx, MACHINES, edges)
        from_raw = raw_usage_series(influx, MACHINES, edges)
        assert_same(from_rollups, from_raw)
    total = from_raw["cnc-01"]
    # the data really exercises the cases: unknown stretches, several states, a meter.
    assert 0 < int(total.known_ms[0]) < 48 * 3_600_000
    assert np.count_nonzero(total.state_ms[0]) >= 4
    assert total.counter_defined[0]
    assert total.gap_count[0] >= 2
    resets, wraps, glitches, jumps = total.counter_counts[0].tolist()
    assert resets and glitches and jumps and not wraps  # no modulus: no wraps


def test_half_hour_zones_fall_back_to_raw(
    influx: InfluxClient, history: dict[str, list[Point]]
) -> None:
    kolkata = ZoneInfo("Asia/Kolkata")  # UTC+05:30: local days start at hh:30 UTC
    edges = [to_ms(e) for e in bucket_edges(START, END, "day", kolkata)]
    assert any(e % 3_600_000 for e in edges)
    assert_same(usage_series(influx, MACHINES, edges), raw_usage_series(influx, MACHINES, edges))


def test_refresh_recomputes_touched_hours_and_late_data(
    influx: InfluxClient, tmp_path: Path
) -> None:
    state_file = tmp_path / "rollups.json"
    t0 = utc(2026, 10, 5, 6)
    # Running 06:00-10:00 reported every minute, then silence (a broker outage) until
    # 11:00, then running again to 12:00.
    live = steady("cnc-01", "running", t0, t0 + 4 * HOUR, MINUTE)
    live += steady("cnc-01", "running", t0 + 5 * HOUR, t0 + 6 * HOUR, MINUTE)
    ingest(influx, live)
    # hours 06..09 and 11 touched; 10 and 12 recomputed too (09:59 and 11:59 hold 5 min).
    assert refresh_rollups(influx, state_file=state_file, overlap=timedelta(0)) == 7
    assert refresh_rollups(influx, state_file=state_file, overlap=timedelta(0)) == 0
    edges = [to_ms(t0 + k * HOUR) for k in range(8)]
    before = read_rollups(influx, ["cnc-01"], edges)["cnc-01"]
    assert (before.known_ms // 1000).tolist() == [3600, 3600, 3600, 3600, 240, 3600, 240]

    # The edge buffer replays the outage late: a fault from 10:00 to 10:30, then idle.
    late = steady("cnc-01", "fault", t0 + 4 * HOUR, t0 + 4 * HOUR + 30 * MINUTE, MINUTE)
    late += steady("cnc-01", "idle", t0 + 4 * HOUR + 30 * MINUTE, t0 + 5 * HOUR, MINUTE)
    ingest(influx, late)
    assert refresh_rollups(influx, state_file=state_file, overlap=timedelta(0)) == 2
    after = read_rollups(influx, ["cnc-01"], edges)["cnc-01"]
    assert_same({"m": after}, {"m": raw_usage_series(influx, ["cnc-01"], edges)["cnc-01"]})
    hour10 = after.usage(4).state_seconds
    assert (hour10["fault"], hour10["idle"], hour10["running"]) == (1800.0, 1800.0, 0.0)
    assert RefreshState.read(state_file) is not None


def test_refresh_rereads_markers_still_in_flight(influx: InfluxClient, tmp_path: Path) -> None:
    state_file = tmp_path / "rollups.json"
    t0 = utc(2026, 10, 6, 6)
    ingest(influx, steady("pump-01", "running", t0, t0 + HOUR, MINUTE))
    assert refresh_rollups(influx, state_file=state_file) == 2  # 06 and the spill into 07
    watermark = RefreshState.read(state_file)
    assert watermark is not None
    # A marker stamped 10 s before the watermark lands only now (a slow concurrent write).
    points = [sample("pump-01", t0 + 3 * HOUR, "idle")]
    influx.write(points)
    late_marker = markers(points, now_ns=watermark.watermark_ns - 10_000_000_000)
    influx.write_lines(encode_points(late_marker), precision="ns")
    # 5 min overlap: the marker is seen (again hours 06-07 from the overlap, plus 09 and 10).
    assert refresh_rollups(influx, state_file=state_file) == 4
    rows = read_rollups(influx, ["pump-01"], [to_ms(t0 + 3 * HOUR), to_ms(t0 + 4 * HOUR)])
    assert rows["pump-01"].usage(0).state_seconds["idle"] == 300.0


def test_a_late_stated_sample_updates_the_heartbeats_after_it(
    influx: InfluxClient, tmp_path: Path
) -> None:
    state_file = tmp_path / "rollups.json"
    t0 = utc(2026, 10, 7, 6)
    # Value-only heartbeats every minute 06:00-09:00: no state known yet.
    beats = [sample("comp-01", t0 + k * MINUTE) for k in range(180)]
    ingest(influx, beats)
    assert refresh_rollups(influx, state_file=state_file, overlap=timedelta(0)) == 4
    edges = [to_ms(t0 + k * HOUR) for k in range(4)]
    assert read_rollups(influx, ["comp-01"], edges)["comp-01"].known_ms.tolist() == [0, 0, 0]
    # The "running" sample at 05:59 arrives late: it carries through the whole chain.
    ingest(influx, [sample("comp-01", t0 - MINUTE, "running")])
    assert refresh_rollups(influx, state_file=state_file, overlap=timedelta(0)) == 5  # 05-09
    after = read_rollups(influx, ["comp-01"], edges)["comp-01"]
    assert (after.state_ms[:, 2] // 1000).tolist() == [3600, 3600, 3600]
    assert_same({"m": after}, {"m": raw_usage_series(influx, ["comp-01"], edges)["comp-01"]})


def test_a_machine_moved_to_another_line_is_not_counted_twice(
    influx: InfluxClient, tmp_path: Path
) -> None:
    state_file = tmp_path / "rollups.json"
    t0 = utc(2026, 10, 8, 6)
    # Running on line-b 06:00-06:30, then moved to line-a (which sorts first) and running
    # there 06:30-08:00: the hour of the move is rolled up under both tag sets in turn.
    ingest(influx, steady("cnc-01", "running", t0, t0 + 30 * MINUTE, MINUTE, line="line-b"))
    assert refresh_rollups(influx, state_file=state_file, overlap=timedelta(0)) == 2
    moved = steady("cnc-01", "running", t0 + 30 * MINUTE, t0 + 2 * HOUR, MINUTE, line="line-a")
    ingest(influx, moved)
    assert refresh_rollups(influx, state_file=state_file, overlap=timedelta(0)) == 3
    edges = [to_ms(t0 + k * HOUR) for k in range(4)]
    rolled = read_rollups(influx, ["cnc-01"], edges)
    assert (rolled["cnc-01"].state_ms[:, 2] // 1000).tolist() == [3600, 3600, 240]
    assert_same(rolled, raw_usage_series(influx, ["cnc-01"], edges))
    # One rollup point per machine and hour, under the tags it has now.
    series = influx.query_series('SELECT "known_s" FROM "usage_hourly" GROUP BY "line"')
    assert {s.tags["line"]: len(s.values) for s in series} == {"line-a": 3}
    # A rebuild after the move rewrites the hours under the current tags only.
    assert rebuild_rollups(influx, t0, t0 + 3 * HOUR) == 3
    assert_same(
        read_rollups(influx, ["cnc-01"], edges), raw_usage_series(influx, ["cnc-01"], edges)
    )


def test_concurrent_refreshes_can_share_the_watermark_file(tmp_path: Path) -> None:
    # The analytics service, `runhours usage` and `runhours billing export` all refresh
    # with <data_dir>/analytics/rollups.json; a write must not trip over another's.
    state_file = tmp_path / "analytics" / "rollups.json"
    errors: list[BaseException] = []

    def write_many(base: int) -> None:
        try:
            for i in range(200):
                RefreshState(base + i).write(state_file)
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=write_many, args=(k * 1000,)) for k in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    state = RefreshState.read(state_file)
    assert state is not None and state.watermark_ns % 1000 == 199
    assert [p.name for p in state_file.parent.iterdir()] == ["rollups.json"]


def test_a_heartbeat_chain_at_the_carry_horizon_is_cut_the_same_in_every_window(
    influx: InfluxClient,
) -> None:
    t0 = utc(2026, 10, 9)
    # "running" at 23:59:30, then only heartbeats every minute at hh:mm:30. The beat at
    # 23:59:30 the next day is exactly 24 h (the carry horizon) after the state: still
    # running, and it holds until the next beat at 00:00:30, which is past the horizon.
    anchor = t0 - timedelta(seconds=30)
    beats = [sample("cnc-01", anchor, "running")]
    beats += [sample("cnc-01", anchor + k * MINUTE) for k in range(1, 24 * 60 + 30)]
    influx.write(beats)
    day2 = t0 + 24 * HOUR
    edges = [to_ms(day2 - HOUR), to_ms(day2), to_ms(day2 + HOUR)]
    raw = raw_usage_series(influx, ["cnc-01"], edges)["cnc-01"]
    assert (raw.state_ms[:, 2] // 1000).tolist() == [3600, 30]
    # Computed alone (as its hourly rollup is), the hour from the edge sees those 30 s too.
    alone = raw_usage_series(influx, ["cnc-01"], edges[1:])["cnc-01"]
    assert (alone.state_ms[:, 2] // 1000).tolist() == [30]
    rebuild_rollups(influx, day2, day2 + HOUR)
    rebuild_rollups(influx, day2 - HOUR, day2)
    assert_same(read_rollups(influx, ["cnc-01"], edges), {"cnc-01": raw})


def test_a_marker_from_a_clock_ahead_does_not_hide_other_hosts_markers(
    influx: InfluxClient, tmp_path: Path
) -> None:
    state_file = tmp_path / "rollups.json"
    t0 = utc(2026, 10, 6, 6)
    # Ingest host A's clock runs an hour ahead: its marker is stamped in our future.
    ahead = [sample("pump-01", t0, "running")]
    influx.write(ahead)
    influx.write_lines(encode_points(markers(ahead, now_ns=time.time_ns() + 3600 * 10**9)), "ns")
    refresh_rollups(influx, state_file=state_file)
    watermark = RefreshState.read(state_file)
    assert watermark is not None and watermark.watermark_ns <= time.time_ns()
    # Host B (right clock) writes after that refresh: its hour must still be rolled up.
    later = [sample("cnc-01", t0, "idle")]
    ingest(influx, later)
    refresh_rollups(influx, state_file=state_file)
    rows = read_rollups(influx, ["cnc-01"], [to_ms(t0), to_ms(t0 + HOUR)])
    assert rows["cnc-01"].usage(0).state_seconds["idle"] == 300.0


def test_refreshes_sharing_a_watermark_file_run_one_at_a_time(
    influx: InfluxClient, tmp_path: Path
) -> None:
    state_file = tmp_path / "rollups.json"
    lock = (tmp_path / "rollups.json.lock").open("w")
    fcntl.flock(lock, fcntl.LOCK_EX)  # another refresh is running
    done = threading.Event()

    def refresh() -> None:
        refresh_rollups(influx, state_file=state_file)
        done.set()

    worker = threading.Thread(target=refresh)
    worker.start()
    assert not done.wait(1.0)  # it waits for the running one ...
    fcntl.flock(lock, fcntl.LOCK_UN)
    assert done.wait(10)  # ... and goes on once it finished
    worker.join()
    lock.close()
