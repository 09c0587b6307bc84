"""The plant floor without services: shift schedules, the plant file, simulated machines that
work those shifts and count parts, and the pure maths of stops, parts and OEE.

Figures are exact (integer milliseconds, whole parts) and computed by hand here; the
worked example of docs/oee.md is checked to the digit.
"""

from __future__ import annotations

import random
import re
from collections import Counter
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import numpy as np
import pytest
from rich.console import Console

from analytics.floor import CounterSeries, count_runs
from analytics.machines import MachineKey
from analytics.oee import Oee, oee_rows
from analytics.parts import increments, parts_per_window
from analytics.periods import to_ms
from analytics.plant import DEFAULT_PLANT, MachinePlan, PlantError, load_plant, parse_plant
from analytics.shifts import Schedule, ScheduleError, Shift, ShiftRun
from analytics.stops import Intervals, state_intervals, stops_in
from analytics.usage import state_ms_by_bucket
from runhours.commands._tables import Col, duration, fit_table, number, percent
from runhours.fleet import follow_plant
from simulators import MachineSim, fleet
from simulators.spec import CNC_IDEAL_CYCLE_S
from tests.support.paths import REPO
from tests.support.plantfloor import plant_data, plant_for
from wire import STATES

BERLIN = ZoneInfo("Europe/Berlin")
H = 3_600_000
MIN = 60_000


def local(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> int:
    return to_ms(datetime(year, month, day, hour, minute, tzinfo=BERLIN))


PLANT = load_plant(DEFAULT_PLANT)
TWO_SHIFT = PLANT.schedules["plant1"]["two-shift"]
CONTINUOUS = PLANT.schedules["plant1"]["continuous"]


# -- schedules --------------------------------------------------------------------------------


def test_a_weekday_of_two_shifts_less_breaks() -> None:
    runs = TWO_SHIFT.runs(local(2026, 3, 2), local(2026, 3, 3))
    assert [(r.day, r.shift) for r in runs] == [
        (date(2026, 3, 2), "early"),
        (date(2026, 3, 2), "late"),
    ]
    early = runs[0]
    assert (early.start_ms, early.end_ms) == (local(2026, 3, 2, 6), local(2026, 3, 2, 14))
    assert early.planned == [
        (local(2026, 3, 2, 6), local(2026, 3, 2, 10)),
        (local(2026, 3, 2, 10, 30), local(2026, 3, 2, 14)),
    ]
    assert early.planned_ms == 7.5 * H
    # Weekends and holidays have no runs; 2026-05-01 is a Friday and a holiday.
    assert TWO_SHIFT.runs(local(2026, 3, 7), local(2026, 3, 9)) == []
    assert TWO_SHIFT.runs(local(2026, 5, 1), local(2026, 5, 2)) == []
    # The utilities run on holidays (their schedule ignores them).
    assert len(CONTINUOUS.runs(local(2026, 5, 1, 6), local(2026, 5, 2, 6))) == 3


def test_night_shifts_belong_to_the_day_they_start_and_follow_dst() -> None:
    # Spring forward (2026-03-29 02:00 → 03:00): Saturday's night shift lasts 7 hours.
    runs = CONTINUOUS.runs(local(2026, 3, 28, 6), local(2026, 3, 29, 6))
    night = runs[-1]
    assert (night.day, night.shift) == (date(2026, 3, 28), "C")
    assert night.planned_ms == 7 * H
    # Fall back (2026-10-25 03:00 → 02:00): 9 hours; the day shifts keep 8.
    runs = CONTINUOUS.runs(local(2026, 10, 24, 6), local(2026, 10, 25, 6))
    assert [r.planned_ms // H for r in runs] == [8, 8, 9]
    # A break in a night shift falls on the next day.
    shift = Shift("N", time(22), time(6), ((time(2), time(2, 30)),))
    schedule = Schedule("nights", "Europe/Berlin", (shift,), frozenset(range(7)))
    [run] = schedule.runs(local(2026, 3, 2, 12), local(2026, 3, 3))
    assert run.breaks == ((local(2026, 3, 3, 2), local(2026, 3, 3, 2, 30)),)
    assert run.planned_ms == 7.5 * H and run.week == (2026, 10)


def test_schedule_errors_name_the_problem() -> None:
    with pytest.raises(ScheduleError, match="shifts 'a' and 'b' overlap"):
        Schedule("x", "UTC", (Shift("a", time(6), time(15)), Shift("b", time(14), time(22))))
    with pytest.raises(ScheduleError, match=r"break 15:00-15:30 must lie inside the shift"):
        Shift("a", time(6), time(14), ((time(15), time(15, 30)),))

    def bad(**changes: object) -> str:
        data = plant_data("p1")
        schedule = data["site"]["p1"]["schedule"]["two-shift"]
        for key, value in changes.items():
            if key == "timezone":
                data["site"]["p1"]["timezone"] = value
            elif key == "reason":
                data["reason"].append(value)
            elif key == "machine":
                data["machine"].update(value)
            else:
                schedule[key] = value
        with pytest.raises(PlantError) as caught:
            parse_plant(data, "plant.toml")
        return str(caught.value)

    assert "site.p1.timezone: unknown time zone 'Mars/Base'" in bad(timezone="Mars/Base")
    assert "site.p1.schedule.two-shift.days: 'Mo' is not a weekday" in bad(days=["Mo"])
    assert "shifts[0].start: '6h' is not a local time (write HH:MM" in bad(
        shifts=[{"name": "early", "start": "6h", "end": "14:00"}]
    )
    assert "reason codes must be unique: TOOL" in bad(
        reason={"code": "TOOL", "label": "again", "category": "unplanned"}
    )
    assert "reason.9.category" in bad(reason={"code": "X", "label": "x", "category": "maybe"})
    assert "no schedule 'nights' at site 'p1'" in bad(machine={"p1/cnc-09": {"schedule": "nights"}})
    assert "write site/machine" in bad(machine={"cnc-09": {"ideal_cycle_s": 60}})
    with pytest.raises(PlantError, match="no such plant-floor file"):
        load_plant(REPO / "examples" / "nope.toml")


def test_machines_get_their_schedule_and_cycle_from_patterns_in_file_order() -> None:
    plant = plant_for("p1")
    assert plant.plan(MachineKey("p1", "cnc-02")) == MachinePlan(
        plant.schedules["p1"]["two-shift"], 120.0
    )
    pump = plant.plan(MachineKey("p1", "pump-07"))
    assert pump.schedule is plant.schedules["p1"]["continuous"] and pump.ideal_cycle_s is None
    assert plant.plan(MachineKey("p9", "cnc-01")) == MachinePlan(None, None)  # no such site
    # The example plant's cycles are the simulated fleet's (the demo relies on it).
    assert [
        PLANT.plan(MachineKey("plant1", f"cnc-0{n}")).ideal_cycle_s for n in (1, 2, 3, 4)
    ] == list(CNC_IDEAL_CYCLE_S)
    assert PLANT.reason("PM").category == "planned"
    with pytest.raises(PlantError, match=r"unknown code 'XX'.*codes: BREAKDOWN, TOOL"):
        PLANT.reason("XX")


# -- simulated machines on the plant's shifts --------------------------------------------------


def test_simulated_machines_work_the_shifts_idle_in_breaks_and_count_every_part() -> None:
    start = datetime(2026, 3, 2, tzinfo=BERLIN).astimezone(UTC)
    end = start + timedelta(days=3)
    specs = follow_plant(fleet(3, start=start, site="plant1"), PLANT)  # cnc, pump, compressor
    cnc = MachineSim(specs[0], start)
    readings = cnc.advance(end)
    truth = cnc.truth
    runs = TWO_SHIFT.runs(to_ms(start), to_ms(end))
    planned = [w for r in runs for w in r.planned]
    for reading in readings:  # running only in planned time; idle (or a repair) in breaks
        if reading.sample.state == "running":
            t = reading.sample.ts_ms
            assert any(a <= t < b for a, b in planned), reading.sample.ts
    for run in runs:
        for b0, _ in run.breaks:
            assert cnc.state_at(datetime.fromtimestamp((b0 + 10 * MIN) / 1000, UTC)) in (
                "idle",
                "fault",
            )
    # Scheduled time per hour is the planned time (the truth knows the same shifts).
    per_hour: Counter[int] = Counter()
    for a, b in planned:
        for hour in range(a - a % H, b, H):
            per_hour[hour] += min(b, hour + H) - max(a, hour)
    assert {to_ms(h): int(s * 1000) for h, s in truth.scheduled.items()} == dict(per_hour)
    # Counter readings on the hour add up to the truth's parts per hour, exactly.
    at = {r.sample.ts_ms: r.counters for r in readings}
    for when, (total, good) in truth.parts.items():
        t = to_ms(when)
        assert at[t + H]["parts_total"] - at[t]["parts_total"] == total
        assert at[t + H]["parts_good_total"] - at[t]["parts_good_total"] == good
    made = sum(p[0] for p in truth.parts.values())
    running_s = truth.seconds("running")
    assert 0.80 < 90.0 * made / running_s < 0.97  # performance: the cycle slowed 4-20 %
    assert 0.95 < sum(p[1] for p in truth.parts.values()) / made < 0.995
    # A pump makes no parts and runs around the clock, weekend included.
    pump = MachineSim(specs[1], start)
    assert "parts_total" not in pump.advance(end)[0].counters
    assert pump.truth.parts == {} and pump.truth.seconds("off") == 0.0


# -- pure maths -------------------------------------------------------------------------------


def test_state_intervals_integrate_like_the_usage_engine() -> None:
    rng = random.Random(7)
    for _ in range(50):
        ts = np.asarray(sorted(rng.sample(range(0, 4 * H, 1000), 200)), np.int64)
        codes = np.asarray([rng.choice([-1, 0, 1, 2, 2, 3]) for _ in ts], np.int8)
        edges = np.asarray([0, H, 2 * H + 123, 4 * H], np.int64)
        state_ms, _ = state_ms_by_bucket(ts, codes, edges, 5 * MIN, 24 * H)
        intervals = state_intervals(ts, codes, 5 * MIN, 24 * H)
        for k in range(3):
            piece = intervals.clip(int(edges[k]), int(edges[k + 1]))
            assert [piece.ms(c) for c in range(len(STATES))] == state_ms[k].tolist()


def _intervals(*spans: tuple[int, int, str]) -> Intervals:
    return Intervals(
        np.asarray([a for a, _, _ in spans], np.int64),
        np.asarray([b for _, b, _ in spans], np.int64),
        np.asarray([STATES.index(s) for _, _, s in spans], np.int8),
    )


def test_stops_merge_stop_states_and_end_at_running_unknown_and_window_edges() -> None:
    states = _intervals(
        (0, 10 * MIN, "running"),
        (10 * MIN, 30 * MIN, "fault"),
        (30 * MIN, 40 * MIN, "idle"),  # a fault then waiting: one stop
        (40 * MIN, 50 * MIN, "running"),
        (50 * MIN, 53 * MIN, "idle"),  # short
        (60 * MIN, 70 * MIN, "idle"),  # after 7 unknown minutes: its own stop
        (70 * MIN, 130 * MIN, "maintenance"),  # cut by the window's end (a break) at 120
    )
    stops = stops_in(states, [(0, 120 * MIN)], ["idle", "fault", "maintenance", "off"], 130 * MIN)
    assert [(s.start_ms // MIN, s.end_ms // MIN, s.state_ms) for s in stops] == [
        (10, 40, {"fault": 20 * MIN, "idle": 10 * MIN}),
        (50, 53, {"idle": 3 * MIN}),
        (60, 120, {"idle": 10 * MIN, "maintenance": 50 * MIN}),
    ]
    assert stops[0].main_state == "fault" and stops[2].main_state == "maintenance"
    assert (
        not stops[2].open
        and stops_in(states, [(0, 135 * MIN)], ["maintenance"], 130 * MIN)[-1].open
    )


def test_parts_are_shared_by_running_time_and_add_up_exactly() -> None:
    assert increments(np.asarray([10, 15, 15, 3, 8], np.int64)).tolist() == [0, 5, 0, 3, 5]
    running = _intervals((0, 60 * MIN, "running"), (90 * MIN, 120 * MIN, "running"))
    table = running.cumulative(STATES.index("running"))
    windows = [(0, 30 * MIN), (30 * MIN, 100 * MIN)]
    # 100 parts between readings at 0 and 120 min: 30 min of running in the first window,
    # 30 + 10 in the second, 20 outside planned time (100-120): 33.3 / 44.4 / 22.2, and
    # the part left over by rounding down goes to the largest remainder (the 44.4).
    got = parts_per_window(np.asarray([0, 120 * MIN]), np.asarray([500, 600]), table, windows)
    assert got.tolist() == [33, 45]  # and 22 outside: 33 + 45 + 22 = 100
    # No running between two readings: the parts belong where the later reading was.
    idle = _intervals((0, 1, "idle")).cumulative(STATES.index("running"))
    got = parts_per_window(np.asarray([5 * MIN, 40 * MIN]), np.asarray([0, 7]), idle, windows)
    assert got.tolist() == [0, 7]
    # A reset: the new value is the count since.
    got = parts_per_window(np.asarray([0, 10 * MIN]), np.asarray([900, 4]), table, windows)
    assert got.tolist() == [4, 0]


def test_the_worked_example_of_docs_oee_md() -> None:
    """docs/oee.md: an 8 h early shift with a 30 min break, 6 h running, a 60 s ideal
    cycle, 300 parts of which 291 good: A 80 %, P 83.33 %, Q 97 %, OEE 64.67 %."""
    doc = (REPO / "docs" / "oee.md").read_text()
    for figure in ("80.00 %", "83.33 %", "97.00 %", "64.67 %", "27,000 s", "21,600 s"):
        assert figure in doc, figure
    shift = Shift("early", time(6), time(14), ((time(10), time(10, 30)),))
    run = ShiftRun(
        date(2026, 3, 2),
        "early",
        local(2026, 3, 2, 6),
        local(2026, 3, 2, 14),
        ((local(2026, 3, 2, 10), local(2026, 3, 2, 10, 30)),),
    )
    assert Schedule("s", "Europe/Berlin", (shift,)).runs(run.start_ms, run.end_ms) == [run]
    t0 = run.start_ms
    states = _intervals(
        (t0, t0 + 2 * H, "running"),
        (t0 + 2 * H, t0 + 3 * H, "fault"),  # 08:00-09:00: a stop
        (t0 + 3 * H, t0 + 4 * H, "running"),
        (t0 + 4 * H, t0 + 4 * H + 30 * MIN, "idle"),  # the break: not planned time
        (t0 + 4 * H + 30 * MIN, t0 + 6 * H + 30 * MIN, "running"),
        (t0 + 6 * H + 30 * MIN, t0 + 6 * H + 34 * MIN, "idle"),  # a short stop
        (t0 + 6 * H + 34 * MIN, t0 + 7 * H + 34 * MIN, "running"),
        (t0 + 7 * H + 34 * MIN, t0 + 8 * H, "idle"),  # waiting for material till the end
    )
    counters = CounterSeries(
        np.asarray([t0, t0 + 8 * H], np.int64),
        np.asarray([1000, 1300], np.int64),
        np.asarray([970, 1261], np.int64),
    )
    [counts], stops = count_runs([run], states, counters, PLANT, now_ms=t0 + 10 * H)
    assert (counts.planned_ms, counts.running_ms, counts.known_ms) == (
        27_000_000,
        21_600_000,
        27_000_000,
    )
    assert (counts.parts_total, counts.parts_good) == (300, 291)
    assert (counts.stops, counts.stop_ms, counts.short_stop_ms) == (2, 86 * MIN, 4 * MIN)
    assert [s.state_ms for _, s in stops] == [{"fault": H}, {"idle": 26 * MIN}]
    key = MachineKey("plant1", "cnc-09")
    figures = Oee.of(key, MachinePlan(None, 60.0), counts)
    assert (figures.availability, figures.performance, figures.quality) == (
        0.8,
        18_000 / 21_600,
        0.97,
    )
    assert figures.oee == pytest.approx(0.8 * (18_000 / 21_600) * 0.97) == 60 * 291 / 27_000
    assert figures.missing() == []
    # Without an ideal cycle performance and OEE are not available, never guessed.
    assert Oee.of(key, MachinePlan(None, None), counts).performance is None
    assert Oee.of(key, MachinePlan(None, None), counts).missing() == ["no ideal cycle"]


def test_a_line_sums_its_machines_and_says_what_it_has() -> None:
    from analytics.floor import MachineFloor, RunCounts

    run = ShiftRun(date(2026, 3, 2), "A", 0, 8 * H)
    cnc = RunCounts(run, 8 * H, 6 * H, 8 * H, H, 2, 0, 240, 233)
    pump = RunCounts(run, 8 * H, 7 * H, 8 * H, 0, 0, 0, None, None)
    floors = [
        MachineFloor(MachineKey("p", "cnc-01"), "line-a", MachinePlan(None, 60.0), [cnc]),
        MachineFloor(MachineKey("p", "pump-01"), "line-a", MachinePlan(None, None), [pump]),
    ]
    rows = oee_rows(floors, "day")
    line = next(r for r in rows if r.scope == "line").figures
    assert line.availability == 13 / 16  # both machines
    assert line.performance == 240 * 60 / (6 * 3600) and line.quality == 233 / 240  # the mill
    assert line.oee == 233 * 60 / (8 * 3600)
    assert line.missing() == ["P/Q/OEE of 1 of 2"]
    assert next(r for r in rows if r.name == "pump-01").figures.missing() == ["no part counter"]
    assert next(r for r in rows if r.name == "pump-01").figures.oee is None


# -- tables for people ------------------------------------------------------------------------


def test_figures_are_formatted_to_their_unit() -> None:
    assert [duration(s) for s in (0, 59.9, 61, 3599, 3600, 8 * 3600 + 125.9, 170 * 3600)] == [
        "0s", "59s", "1m 01s", "59m 59s", "1h 00m", "8h 02m", "170h 00m",
    ]  # fmt: skip
    assert [number(v) for v in (3247.0, 3.2471, 0.00312, 12.0, 1e-9, 123456.7)] == [
        "3247", "3.247", "0.00312", "12", "0.000000001", "123457",
    ]  # fmt: skip
    assert (percent(0.74639), percent(None), percent(1.0, 2)) == ("74.6%", "n/a", "100.00%")


def test_tables_fit_80_columns_and_never_cut_a_figure() -> None:
    cols = [Col("machine"), Col("a long header", right=True), Col("note", figure=False, drop=2)]
    cols += [Col(f"figure {n}", right=True, drop=1) for n in range(6)]
    rows = [
        ["cnc-01", "3,247.125", "a note that goes on and on and has to wrap", *(["12h 34m"] * 6)],
        ["pump-17", "0.00312", "short", *(["1,204/1,250"] * 6)],
    ]
    for width in (80, 100, 200):
        out = Console(width=width, record=True)
        out.print(fit_table(out, cols, rows, title="a title that is long " * 8))
        text = out.export_text()
        assert max(len(line) for line in text.splitlines()) <= width
        assert "…" not in text
        for cell in ("cnc-01", "pump-17", "3,247.125", "0.00312"):
            assert re.search(rf"(^|\s){re.escape(cell)}(\s|$)", text, re.M), (width, cell)
    assert "figure 5" in text  # at 200 columns nothing is left out


def test_a_csv_replay_carries_part_counters_as_counters(tmp_path: Path) -> None:
    from edge.sources import read_csv

    path = tmp_path / "cnc.csv"
    path.write_text(
        "ts,state,vibration_mm_s,parts_total,parts_good_total\n"
        "2026-03-02T08:00:00+01:00,running,1.2,1000,970\n"
        "2026-03-02T08:01:30+01:00,running,1.3,1001,971\n"
    )
    readings = list(read_csv(path))
    assert [dict(r.counters) for r in readings] == [
        {"parts_total": 1000.0, "parts_good_total": 970.0},
        {"parts_total": 1001.0, "parts_good_total": 971.0},
    ]
    assert all(set(r.sample.values) == {"vibration_mm_s"} for r in readings)
