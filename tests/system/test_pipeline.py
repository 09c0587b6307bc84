"""The whole pipeline on real services: simulators → edge agents → Mosquitto → ingest → InfluxDB.

Each test runs a fleet of ≥ 10 simulated machines through one edge agent per machine,
breaks one part of the chain mid-run (broker, ingest, database), and then checks that
InfluxDB holds exactly one point per sample the simulators produced, per machine, with
the source's timestamps and values; the week-long run also checks billed hours against
the simulator's ground truth (issue 3).
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from analytics.rollups import fleet_usage, refresh_rollups
from common.settings import RunhoursSettings
from edge.config import EdgeOptions, EdgeSettings
from ingest import IngestService, IngestSettings
from runhours.fleet import FleetRun
from runhours.services import LocalServices
from simulators import GroundTruth, MachineSim, MachineSpec, fleet, read_ground_truth
from store import InfluxClient
from tests.support.faults import run_paced
from tests.support.paths import REPO
from tests.support.processes import terminate
from tests.support.waiting import wait_for
from wire import to_epoch_ms

START = datetime(2026, 3, 2, tzinfo=UTC)  # a Monday
INTERVAL_S = 10.0
MAX_GAP_S = 300


def edge_settings(settings: RunhoursSettings, site: str) -> EdgeSettings:
    return EdgeSettings(
        **settings.model_dump(include=set(RunhoursSettings.model_fields)),
        edge=EdgeOptions(site=site, reconnect_min=0.2, reconnect_max=2.0, publish_timeout=5.0),
    )


def ingest_settings(settings: RunhoursSettings, site: str) -> IngestSettings:
    return IngestSettings.from_base(
        settings, client_id=f"ingest-{site}", site=site, reconnect_max_delay=2.0, retry_max=2.0
    )


def run_with(
    settings: EdgeSettings,
    specs: list[MachineSpec],
    days: float,
    wall_seconds: float,
    truth: Path,
    disruption: Callable[[], Awaitable[None]],
) -> FleetRun:
    """Run the fleet paced to last about ``wall_seconds``, with ``disruption`` alongside."""
    return run_paced(
        settings, specs, days * 24, wall_seconds, disruption, drain_timeout=120, ground_truth=truth
    )


def assert_every_sample_stored_once(
    influx: InfluxClient, specs: list[MachineSpec], run: FleetRun, days: float
) -> None:
    """Exact count per machine, and a random sample of readings compared field by field."""
    assert run.dropped == 0 and run.buffered == 0 and not run.interrupted
    produced = {m.spec.machine: m.produced for m in run.machines}
    assert all(n > 0 for n in produced.values())
    wait_for(lambda: influx.count("telemetry", "state") == produced, 120, "every point in InfluxDB")
    assert influx.count("telemetry", "state") == produced  # none lost, none duplicated
    rng = random.Random(5)
    for spec in rng.sample(specs, 3):
        # The simulator is deterministic: regenerate the source readings and compare.
        readings = MachineSim(spec, START, sample_interval_s=INTERVAL_S).advance(
            START + timedelta(days=days)
        )
        assert len(readings) == produced[spec.machine]
        for reading in rng.sample(readings, 20):
            ts = reading.sample.ts_ms
            rows = influx.query_rows(
                f"SELECT * FROM telemetry WHERE machine = '{spec.machine}' AND time = {ts}ms"
            )
            assert len(rows) == 1
            row = rows[0]
            assert row["time"] == ts
            assert row["state"] == reading.sample.state
            assert (row["site"], row["line"]) == (spec.site, spec.line)
            for name, value in reading.sample.values.items():
                assert row[name] == value, (spec.machine, ts, name)


def daily_truth(truth: GroundTruth) -> dict[datetime, float]:
    days: dict[datetime, float] = {}
    for hour, seconds in truth.hours.items():
        day = hour.replace(hour=0)
        days[day] = days.get(day, 0.0) + seconds.get("running", 0.0)
    return days


def test_a_week_through_a_30s_broker_outage_is_stored_exactly_and_billed_to_the_truth(
    own_services: LocalServices, own_settings: RunhoursSettings, test_id: str, tmp_path: Path
) -> None:
    days = 7
    specs = fleet(10, seed=3, start=START, site=test_id)
    # One machine's sensor gateway is off for 2 h on Wednesday: those samples never exist.
    gap = (START + timedelta(days=2, hours=10, minutes=3), START + timedelta(days=2, hours=12))
    specs[1] = dataclasses.replace(specs[1], blackouts=(gap,))
    truth_file = tmp_path / "truth.json"
    influx = InfluxClient(own_settings.influx_url, own_settings.influx_db)
    influx.ensure_database()
    outage: dict[str, int] = {}

    async def broker_outage() -> None:
        await asyncio.sleep(12)
        await asyncio.to_thread(own_services.mosquitto.stop)
        outage["stopped_at"] = int(time.time())
        await asyncio.sleep(30)
        await asyncio.to_thread(own_services.mosquitto.start)

    with IngestService(ingest_settings(own_settings, test_id)) as ingest:
        assert ingest.wait_ready(30)
        run = run_with(
            edge_settings(own_settings, test_id), specs, days, 60, truth_file, broker_outage
        )
        assert outage, "the broker was never stopped"
        assert_every_sample_stored_once(influx, specs, run, days)
        assert ingest.wait_idle(60)
        assert ingest.stats.connects >= 2  # it did lose the broker and came back

    # Billing (issue 3): daily running hours from the rollups the ingest markers drove.
    refresh_rollups(influx, state_file=tmp_path / "rollups.json")
    end = START + timedelta(days=days)
    names = [s.machine for s in specs]
    usage = fleet_usage(influx, START, end, machines=names, by="day")
    raw = fleet_usage(influx, START, end, machines=names, by="day", from_raw=True)
    assert [(u.machine, u.start, u.state_seconds, u.known_seconds) for u in usage] == [
        (u.machine, u.start, u.state_seconds, u.known_seconds) for u in raw
    ]
    truths = {t.machine: t for t in read_ground_truth(truth_file)}
    blackout_machine = specs[1]
    readings = MachineSim(blackout_machine, START, sample_interval_s=INTERVAL_S).advance(end)
    last_before_gap = max(r.sample.ts_ms for r in readings if r.sample.ts < gap[0])
    expected_unknown_s = (to_epoch_ms(gap[1]) - last_before_gap) / 1000 - MAX_GAP_S
    checked = 0
    for u in usage:
        true_h = daily_truth(truths[u.machine])[u.start.astimezone(UTC)] / 3600
        metered_h = u.state_seconds.get("running", 0.0) / 3600
        if u.machine == blackout_machine.machine and u.start.astimezone(UTC) == START + timedelta(
            days=2
        ):
            assert u.coverage < 1
            assert 86400 - u.known_seconds == pytest.approx(expected_unknown_s, abs=1e-3)
        else:
            assert u.coverage == 1, (u.machine, u.start)
            assert abs(metered_h - true_h) <= 0.01, (u.machine, u.start, metered_h, true_h)
            checked += 1
    assert checked == len(specs) * days - 1


@pytest.fixture
def ingest_process(
    own_settings: RunhoursSettings, test_id: str, tmp_path: Path
) -> Iterator[Callable[[], subprocess.Popen[bytes]]]:
    """Start `runhours ingest` as a real process (same session id each time). Its log goes
    to ``ingest-N.log`` in the test's directory: a pipe nobody reads would stall it once
    full."""
    started: list[subprocess.Popen[bytes]] = []
    env = {
        **os.environ,
        "RUNHOURS_MQTT_URL": own_settings.mqtt_url,
        "RUNHOURS_INFLUX_URL": own_settings.influx_url,
        "RUNHOURS_INFLUX_DB": own_settings.influx_db,
        "RUNHOURS_DATA_DIR": str(own_settings.data_dir),
        "RUNHOURS_INGEST__CLIENT_ID": f"ingest-{test_id}",
        "RUNHOURS_INGEST__SITE": test_id,
    }

    def start() -> subprocess.Popen[bytes]:
        with (tmp_path / f"ingest-{len(started)}.log").open("wb") as log:
            process = subprocess.Popen(
                [sys.executable, "-m", "runhours", "ingest"],
                cwd=REPO,
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=log,
            )
        started.append(process)
        return process

    yield start
    for process in started:
        terminate(process, 30)


def test_ingest_killed_with_sigkill_mid_run_loses_and_duplicates_nothing(
    own_settings: RunhoursSettings,
    test_id: str,
    tmp_path: Path,
    ingest_process: Callable[[], subprocess.Popen[bytes]],
) -> None:
    days = 1.0
    specs = fleet(10, seed=4, start=START, site=test_id)
    influx = InfluxClient(own_settings.influx_url, own_settings.influx_db)
    influx.ensure_database()
    first = ingest_process()
    kills: list[int] = []

    async def kill_ingest() -> None:
        await asyncio.sleep(10)
        first.kill()  # SIGKILL: no flush, no ack, no goodbye
        kills.append(first.wait(10))
        await asyncio.sleep(3)
        ingest_process()

    run = run_with(
        edge_settings(own_settings, test_id), specs, days, 30, tmp_path / "t.json", kill_ingest
    )
    assert kills == [-signal.SIGKILL]
    assert_every_sample_stored_once(influx, specs, run, days)


def test_influxdb_stopped_30s_mid_run_loses_nothing(
    own_services: LocalServices, own_settings: RunhoursSettings, test_id: str, tmp_path: Path
) -> None:
    days = 1.0
    specs = fleet(10, seed=5, start=START, site=test_id)
    influx = InfluxClient(own_settings.influx_url, own_settings.influx_db)
    influx.ensure_database()
    stopped: list[bool] = []

    async def database_outage() -> None:
        await asyncio.sleep(8)
        await asyncio.to_thread(own_services.influxdb.stop)
        stopped.append(not own_services.influxdb.ready())
        await asyncio.sleep(30)
        await asyncio.to_thread(own_services.influxdb.start)

    with IngestService(ingest_settings(own_settings, test_id)) as ingest:
        assert ingest.wait_ready(30)
        run = run_with(
            edge_settings(own_settings, test_id), specs, days, 30, tmp_path / "t.json",
            database_outage,
        )  # fmt: skip
        assert stopped == [True]
        assert_every_sample_stored_once(influx, specs, run, days)
        assert ingest.stats.write_retries > 0  # it did hit the outage
