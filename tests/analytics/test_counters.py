"""The hour-meter rules (analytics/counters.py), by hand and as properties (hypothesis).

Pure: readings in, billed milliseconds and anomalies out. The last property runs the
whole rollup path without a database: hourly rollup points, read back and summed into
coarser buckets, equal a direct computation over those buckets.
"""

from __future__ import annotations

from collections.abc import Sequence
from zoneinfo import ZoneInfo

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from analytics.counters import (
    EVENT_LIMIT,
    CounterEvent,
    CounterRules,
    counter_by_bucket,
    decode_events,
    encode_events,
    judge_readings,
)
from analytics.machines import MachineKey
from analytics.rollups import rollup_points, series_from_rollup_rows
from analytics.usage import NO_STATE, Samples, UsageSeries, series_from_samples

S = 1000  # ms per second
H = 3_600_000
KEY = MachineKey("plant1", "comp-02")


def billed(
    ts_s: Sequence[float], values_s: Sequence[float], rules: CounterRules = CounterRules()
) -> list[int]:
    ts = np.rint(np.asarray(ts_s) * S).astype(np.int64)
    values = np.rint(np.asarray(values_s) * S).astype(np.int64)
    return [int(v) for v in judge_readings(ts, values, None, rules).billed_ms]


def kinds(
    ts_s: Sequence[float], values_s: Sequence[float], rules: CounterRules = CounterRules()
) -> list[str]:
    ts = np.rint(np.asarray(ts_s) * S).astype(np.int64)
    values = np.rint(np.asarray(values_s) * S).astype(np.int64)
    judged = judge_readings(ts, values, None, rules)
    names = ("reset", "wrap", "glitch", "jump")
    return [names[k] if k >= 0 else "" for k in judged.kind.tolist()]


def test_a_stale_value_restored_is_a_glitch_not_a_reset() -> None:
    # The readings, 10 min apart: 36,000,000 s → 36,000,010 → 36,000,009.999.
    # Before: the drop was a reset and billed 36,000,009.999 s (10,000 h). Now: 10 s.
    ts, values = [0, 600, 1200, 1800], [36_000_000, 36_000_010, 36_000_009.999, 36_000_020]
    assert billed(ts, values) == [0, 10_000, 0, 10_001]
    assert kinds(ts, values) == ["", "", "glitch", ""]
    # The next reading counts from the restored value: 10.001 s, within the 600 s elapsed.


def test_a_reset_is_a_drop_to_near_zero_and_the_threshold_is_configurable() -> None:
    ts = [0, 600, 1200]
    assert billed(ts, [36_000_000, 36_000_300, 120]) == [0, 300_000, 120_000]
    assert kinds(ts, [36_000_000, 36_000_300, 120]) == ["", "", "reset"]
    # 700 s is not near zero with the default (600 s): a glitch; with 1000 s it is a reset.
    assert kinds(ts, [36_000_000, 36_000_300, 700]) == ["", "", "glitch"]
    wide = CounterRules(reset_below_ms=1000 * S)
    assert billed(ts, [36_000_000, 36_000_300, 700], wide) == [0, 300_000, 600_000]  # capped
    assert kinds(ts, [36_000_000, 36_000_300, 700], wide) == ["", "", "reset"]


def test_a_register_wraps_at_its_modulus() -> None:
    # A 16-bit register of seconds: 65530 → 4 after 10 s is 10 s of running, not a reset.
    sixteen = CounterRules(modulus_ms=65_536 * S)
    assert billed([0, 10], [65_530, 4], sixteen) == [0, 10_000]
    assert kinds([0, 10], [65_530, 4], sixteen) == ["", "wrap"]
    # Without the modulus it is a reset to 4 s; a wrap that is not plausible (more than
    # the elapsed time) is judged as any other drop.
    assert (billed([0, 10], [65_530, 4]), kinds([0, 10], [65_530, 4])) == (
        [0, 4_000],
        ["", "reset"],
    )
    assert kinds([0, 10], [60_000, 4_000], sixteen) == ["", "glitch"]


def test_an_advance_beyond_the_elapsed_time_is_capped_and_a_jump() -> None:
    assert billed([0, 60, 120], [100, 4_000, 4_060]) == [0, 60_000, 60_000]
    assert kinds([0, 60, 120], [100, 4_000, 4_060]) == ["", "jump", ""]
    # Up to 1 s beyond (meter resolution, clock jitter) is capped silently.
    assert kinds([0, 60], [100, 160.9]) == ["", ""]


def test_events_per_bucket_are_kept_up_to_the_limit_and_counted_exactly() -> None:
    # 30 glitches in one hour: 20 kept, 30 counted.
    ts = np.arange(61, dtype=np.int64) * 60_000
    values = np.where(np.arange(61) % 2 == 0, 1_000_000, 999_000).astype(np.int64)
    meter = counter_by_bucket(ts, values, None, np.array([0, H]))
    assert meter.counts.tolist() == [[0, 0, 30, 0]]
    assert len(meter.events[0]) == EVENT_LIMIT
    assert meter.events[0][0] == CounterEvent("glitch", 60_000, 1_000_000, 999_000, 0)
    assert decode_events(encode_events(meter.events[0])) == meter.events[0]
    assert meter.events[0][0].describe(ZoneInfo("Europe/Berlin")) == (
        "1970-01-01T01:01:00+01:00 glitch: meter 1000.000 s → 999.000 s, billed 0.000 s"
    )


# -- properties -------------------------------------------------------------------------------

readings = st.lists(
    st.tuples(
        st.integers(min_value=1, max_value=7_200_000),  # ms since the reading before
        st.one_of(
            st.integers(min_value=0, max_value=2**40),  # any value at all
            st.integers(min_value=-5_000, max_value=5_000),  # small steps around the last
        ),
        st.booleans(),  # True: the second number is a step from the last value
    ),
    min_size=1,
    max_size=60,
)
rules = st.builds(
    CounterRules,
    reset_below_ms=st.integers(min_value=0, max_value=3_600_000),
    modulus_ms=st.one_of(st.none(), st.sampled_from([65_536_000, 4_294_967_296])),
)


def _arrays(rows: list[tuple[int, int, bool]]) -> tuple[np.ndarray, np.ndarray]:
    ts, values, t, v = [], [], 0, 10**9
    for gap, number, relative in rows:
        t += gap
        v = max(0, v + number) if relative else number
        ts.append(t)
        values.append(v)
    return np.asarray(ts, np.int64), np.asarray(values, np.int64)


@settings(max_examples=1000, deadline=None)
@given(readings, rules)
def test_billed_counter_time_is_never_negative_nor_more_than_the_wall_time(
    rows: list[tuple[int, int, bool]], rule: CounterRules
) -> None:
    ts, values = _arrays(rows)
    judged = judge_readings(ts, values, None, rule)
    assert (judged.billed_ms >= 0).all()
    assert int(judged.billed_ms.sum()) <= int(ts[-1] - ts[0])  # wall time while reporting
    # And bucket by bucket, wherever the buckets are cut, the parts add up to the whole.
    edges = np.unique(np.concatenate([[ts[0]], ts[:: max(1, ts.size // 3)], [ts[-1] + 1]]))
    meter = counter_by_bucket(ts, values, None, edges, rule)
    assert int(meter.billed_ms.sum()) == int(judged.billed_ms.sum())
    assert int(meter.counts.sum()) == int((judged.kind >= 0).sum())


@settings(max_examples=500, deadline=None)
@given(st.lists(st.integers(min_value=1, max_value=600_000), min_size=2, max_size=60), st.data())
def test_a_meter_that_counts_at_most_real_time_is_billed_exactly(
    gaps: list[int], data: st.DataObject
) -> None:
    # A healthy meter: each advance between 0 and the elapsed time. Billed = last - first.
    ts = np.cumsum(np.asarray(gaps, np.int64))
    advance = [data.draw(st.integers(min_value=0, max_value=g)) for g in gaps[1:]]
    values = 5_000_000_000 + np.concatenate([[0], np.cumsum(np.asarray(advance, np.int64))])
    judged = judge_readings(ts, values, None)
    assert int(judged.billed_ms.sum()) == int(values[-1] - values[0])
    assert (judged.kind < 0).all()


# -- the rollup path, pure ----------------------------------------------------------------------


@st.composite
def histories(draw: st.DrawFn) -> tuple[Samples, np.ndarray]:
    """Random samples over 8 hours (states, heartbeats, silences) and meter readings."""
    n = draw(st.integers(min_value=0, max_value=80))
    steps = draw(st.lists(st.integers(1, 40 * 60_000), min_size=n, max_size=n))
    ts = np.cumsum(np.asarray(steps, np.int64)) if n else np.zeros(0, np.int64)
    codes = np.asarray(draw(st.lists(st.integers(NO_STATE, 4), min_size=n, max_size=n)), np.int8)
    keep = ts < 8 * H
    ts, codes = ts[keep], codes[keep]
    metered = draw(st.lists(st.booleans(), min_size=ts.size, max_size=ts.size))
    cts = ts[np.asarray(metered, np.bool_)] if ts.size else ts
    cvalues = np.asarray(
        draw(st.lists(st.integers(0, 50_000_000), min_size=cts.size, max_size=cts.size)), np.int64
    )
    cuts = draw(st.lists(st.integers(1, 7), unique=True, max_size=4))
    edges = np.asarray([0, *sorted(cuts), 8], np.int64) * H
    return Samples(ts, codes, cts, cvalues, None), edges


@settings(max_examples=300, deadline=None)
@given(histories(), st.data())
def test_hourly_rollups_add_up_to_any_coarser_buckets(
    history: tuple[Samples, np.ndarray], data: st.DataObject
) -> None:
    samples, edges = history
    hourly = series_from_samples(KEY, samples, np.arange(0, 8 * H + 1, H))
    points = rollup_points(hourly, {"site": KEY.site, "machine": KEY.machine})
    # Hours never computed have no point: drop some wholly unknown hours without readings.
    droppable = [
        p for k, p in enumerate(points) if hourly.known_ms[k] == 0 and not hourly.counter_defined[k]
    ]
    dropped = {p.ts_ms for p in droppable if data.draw(st.booleans())}
    columns = sorted({name for p in points for name in p.fields})
    rows = [
        [p.ts_ms, *(p.fields.get(c) for c in columns)] for p in points if p.ts_ms not in dropped
    ]
    rolled = series_from_rollup_rows(KEY, ["time", *columns], rows, edges)
    direct = series_from_samples(KEY, samples, edges)
    assert_same_series(rolled, direct)


def assert_same_series(a: UsageSeries, b: UsageSeries) -> None:
    assert np.array_equal(a.state_ms, b.state_ms)
    assert np.array_equal(a.known_ms, b.known_ms)
    assert np.array_equal(a.counter_ms, b.counter_ms)
    assert np.array_equal(a.counter_defined, b.counter_defined)
    assert np.array_equal(a.counter_counts, b.counter_counts)
    assert a.counter_events == b.counter_events
    assert np.array_equal(a.gap_count, b.gap_count)
    assert np.array_equal(a.gap_at_start, b.gap_at_start)
    assert np.array_equal(a.gap_at_end, b.gap_at_end)
