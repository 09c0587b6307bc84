"""OEE and downtime end to end, against the simulator's ground truth.

Six simulated machines (CNC mills on two shifts with breaks, pumps and compressors around
the clock: the example plant's schedules) run a working week through edge agents, a real
Mosquitto and the ingest into a real InfluxDB. Then:

- availability and OEE per machine and production day equal the ground truth within 0.1
  percentage points (the largest difference is printed);
- reasons given to stops (planned and unplanned) make a Pareto whose rows add up
  *exactly* to the stop time, and to the stop time OEE counts;
- the CLI (`runhours oee`, `runhours downtime`) says the same in JSON, and the analytics
  service's points for the dashboards (`oee_shift`, `downtime`) hold the same sums.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from typer.testing import CliRunner

from analytics.downtime import DowntimeStore, assign, listed_stops, pareto
from analytics.floor import MachineFloor, floor_runs
from analytics.floor_points import refresh_floor
from analytics.oee import per_day
from analytics.plant import Plant
from common.settings import RunhoursSettings
from edge.config import EdgeOptions, EdgeSettings
from ingest import IngestService, IngestSettings
from runhours.cli import app
from runhours.fleet import follow_plant, run_fleet
from runhours.services import LocalServices
from simulators import GroundTruth, fleet, read_ground_truth
from store import InfluxClient
from tests.support.paths import REPO
from tests.support.plantfloor import plant_for
from wire import from_epoch_ms, to_epoch_ms

BERLIN = ZoneInfo("Europe/Berlin")
START = datetime(2026, 3, 2, tzinfo=BERLIN).astimezone(UTC)  # a Monday
DAYS = 5
END = START + timedelta(days=DAYS)
H = 3_600_000


@dataclass
class Week:
    settings: RunhoursSettings
    site: str
    plant: Plant
    plant_file: Path
    truths: dict[str, GroundTruth]
    floors: list[MachineFloor]


@pytest.fixture(scope="module")
def week(services: LocalServices, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Week]:
    site = "oee_week"
    root = tmp_path_factory.mktemp("oee")
    settings = RunhoursSettings(
        mqtt_url=services.mqtt_url,
        influx_url=services.influx_url,
        influx_db="t_oee_week",
        data_dir=root / "var",
    )
    plant = plant_for(site)
    plant_file = root / "plant.toml"
    plant_file.write_text((REPO / "examples" / "plant.toml").read_text().replace("plant1", site))
    specs = follow_plant(fleet(6, seed=5, start=START, site=site, degrading=1), plant)
    edge = EdgeSettings(
        **settings.model_dump(include=set(RunhoursSettings.model_fields)),
        edge=EdgeOptions(site=site),
    )
    truth_file = root / "truth.json"
    with InfluxClient(settings.influx_url, settings.influx_db, timeout=120) as client:
        client.ensure_database()
        ingest_settings = IngestSettings.from_base(settings, client_id=f"ingest-{site}", site=site)
        with IngestService(ingest_settings) as ingest:
            assert ingest.wait_ready(30)
            run = asyncio.run(
                run_fleet(edge, specs, start=START, end=END, speed=None, ground_truth=truth_file)
            )
            assert run.published == run.produced and ingest.wait_idle(120)
        floors = floor_runs(client, plant, None, START, END, now=END)
        yield Week(
            settings,
            site,
            plant,
            plant_file,
            {t.machine: t for t in read_ground_truth(truth_file)},
            floors,
        )
        client.query(f'DROP DATABASE "{settings.influx_db}"', epoch=None)


def _truth_day(truth: GroundTruth, floor: MachineFloor, day: object) -> tuple[float, float | None]:
    """Availability and OEE of one production day from the truth's hours (the example
    plant's shifts start and end on the hour)."""
    running = scheduled = good = 0.0
    for run in (r.run for r in floor.runs if r.run.day == day):
        for ms in range(run.start_ms, run.end_ms, H):
            hour = from_epoch_ms(ms)
            running += truth.hours[hour]["running"]
            scheduled += truth.scheduled.get(hour, 0.0)
            good += truth.parts.get(hour, (0, 0))[1]
    oee = truth.ideal_cycle_s * good / scheduled if truth.ideal_cycle_s else None
    return running / scheduled, oee


def test_oee_and_availability_equal_the_ground_truth_per_machine_and_day(week: Week) -> None:
    worst = 0.0
    checked = 0
    for floor in week.floors:
        truth = week.truths[floor.key.machine]
        for day, figures in per_day(floor).items():
            runs = [r.run for r in floor.runs if r.run.day == day]
            if max(r.end_ms for r in runs) > to_epoch_ms(END):
                continue  # Friday's night shift goes on after the simulated week
            assert figures.coverage == 1.0, (floor.key, day)
            availability, oee = _truth_day(truth, floor, day)
            assert figures.availability is not None
            worst = max(worst, abs(figures.availability - availability))
            if oee is None:
                assert figures.oee is None and figures.missing() == ["no part counter"]
            else:
                assert figures.oee is not None
                worst = max(worst, abs(figures.oee - oee))
            checked += 1
    print(f"{checked} machine-days; largest difference to the truth: {worst * 100:.4f} pp")
    assert checked == 6 * DAYS - 4  # the four utilities' Friday
    assert worst <= 0.001  # 0.1 percentage points
    kinds = {f.key.machine: f.plan.schedule.name for f in week.floors if f.plan.schedule}
    assert set(kinds.values()) == {"two-shift", "continuous"}


def test_the_downtime_report_adds_up_exactly(week: Week, tmp_path: Path) -> None:
    store = DowntimeStore(tmp_path / "downtime.sqlite3")
    with InfluxClient(week.settings.influx_url, week.settings.influx_db) as client:
        # Reasons for every other stop of the two mills, through the same path the console
        # and `runhours downtime assign` take (the stop is found from any time inside it).
        given: dict[tuple[str, int], str | None] = {}
        codes = ["TOOL", "MATERIAL", "PM", "SETUP", "BREAKDOWN"]
        mills = [f for f in week.floors if f.key.machine.startswith("cnc")]
        for floor in mills:
            for n, (_, stop) in enumerate(floor.stops[::2]):
                code = codes[n % len(codes)]
                inside = from_epoch_ms(stop.start_ms + stop.ms // 2)
                found, made = assign(client, store, week.plant, floor.key, inside, code, by="ann")
                assert found == stop and made is not None and made.reason == code
                given[(floor.key.machine, stop.start_ms)] = code
        # A changed reason is logged with the one before it.
        floor, (_, first) = mills[0], mills[0].stops[0]
        assign(
            client, store, week.plant, floor.key, from_epoch_ms(first.start_ms), "QUALITY", by="bo"
        )
        given[(floor.key.machine, first.start_ms)] = "QUALITY"
        log = store.history(floor.key, first.start_ms)
        assert [(e["reason"], e["previous"], e["by"]) for e in log] == [
            ("TOOL", None, "ann"),
            ("QUALITY", "TOOL", "bo"),
        ]
    stops = listed_stops(week.floors, store)
    rows = pareto(stops, week.plant)
    total_ms = sum(s.stop.ms for s in stops)
    assert sum(r.ms for r in rows) == total_ms  # exactly: integer milliseconds
    assert total_ms == sum(r.stop_ms for f in week.floors for r in f.runs)  # what OEE counts
    by_reason: dict[str | None, int] = {}
    for s in stops:
        reason = given.get((s.key.machine, s.stop.start_ms))
        by_reason[reason] = by_reason.get(reason, 0) + s.stop.ms
    assert {r.reason: r.ms for r in rows} == by_reason
    assert {r.reason: r.category for r in rows if r.reason} == {
        code: week.plant.reasons[code].category for code in by_reason if code
    }
    assert rows == sorted(rows, key=lambda r: -r.ms)
    print(f"{len(stops)} stops, {total_ms / H:.3f} h; {len(given)} with a reason")

    # The same Pareto from the command line, over the same shifts.
    env = {
        "RUNHOURS_INFLUX_URL": week.settings.influx_url,
        "RUNHOURS_INFLUX_DB": week.settings.influx_db,
        "RUNHOURS_DATA_DIR": str(tmp_path),
    }
    span = ["--from", START.isoformat(), "--to", END.isoformat(), "--plant", str(week.plant_file)]
    result = CliRunner().invoke(app, ["downtime", "report", *span, "--format", "json"], env=env)
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert round(report["stop_seconds"] * 1000) == total_ms
    assert {r["reason"]: round(r["seconds"] * 1000) for r in report["reasons"]} == by_reason
    assert len(report["unassigned"]) == sum(1 for s in stops if s.assignment is None)


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 6)


def test_cli_and_dashboard_points_say_the_same(week: Week, tmp_path: Path) -> None:
    env = {
        "RUNHOURS_INFLUX_URL": week.settings.influx_url,
        "RUNHOURS_INFLUX_DB": week.settings.influx_db,
        "RUNHOURS_DATA_DIR": str(tmp_path),
    }
    # Monday to Thursday: Friday's night shift goes on after the simulated week, and the
    # command (unlike the truth) cannot know that the simulation ended.
    thursday = END - timedelta(days=1)
    args = ["oee", "--from", START.isoformat(), "--to", thursday.isoformat(), "--by", "day"]
    result = CliRunner().invoke(
        app, [*args, "--plant", str(week.plant_file), "--format", "json"], env=env
    )
    assert result.exit_code == 0, result.output
    rows = {(r["scope"], r["name"], r["bucket"]): r for r in json.loads(result.stdout)}
    for floor in week.floors:
        for day, total in per_day(floor).items():
            if day >= thursday.astimezone(BERLIN).date():
                continue
            row = rows[("machine", floor.key.machine, day.isoformat())]
            assert round(row["running_s"] * 1000) == total.running_ms
            assert (row["parts_good"], row["oee"]) == (total.parts_good, _rounded(total.oee))
    line = rows[("line", "line-a", "2026-03-02")]
    assert line["machines"] == 4 and line["with_oee"] == 2  # two mills, a pump, a compressor

    # The analytics service's points (all of the ingest's log on a first refresh).
    with InfluxClient(week.settings.influx_url, week.settings.influx_db) as client:
        store = DowntimeStore(tmp_path / "downtime.sqlite3")
        state = tmp_path / "floor.json"
        written = refresh_floor(client, week.plant, store, state_file=state, now=END)
        assert written >= sum(len(f.runs) for f in week.floors)
        [sums] = client.query_rows(
            'SELECT sum("running_s") AS "running", sum("parts_good") AS "good" FROM "oee_shift" '
            f"WHERE time >= '{START.isoformat()}' AND time < '{END.isoformat()}'"
        )
        assert round(sums["running"] * 1000) == sum(
            r.running_ms for f in week.floors for r in f.runs
        )
        assert sums["good"] == sum(r.parts_good or 0 for f in week.floors for r in f.runs)
        first = min(r.run.start_ms for f in week.floors for r in f.runs)  # Monday 06:00
        [stops] = client.query_rows(
            'SELECT count("seconds") AS "n" FROM "downtime" '
            f"WHERE time >= {first}ms AND time < '{END.isoformat()}'"
        )
        assert stops["n"] == sum(len(f.stops) for f in week.floors)
