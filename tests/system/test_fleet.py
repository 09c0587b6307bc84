"""Large fleets (issue 16): ids valid at any size, the split over processes by the open-files
limit, and 1,000 machines through the real pipeline (`runhours simulate` → Mosquitto →
ingest → InfluxDB) with every sample stored."""

from __future__ import annotations

import math
import resource
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from typer.testing import CliRunner

from common.settings import RunhoursSettings
from ingest import IngestService, IngestSettings
from runhours.cli import app as cli
from runhours.commands._simulate import ROWS
from runhours.commands.simulate import MAX_MACHINES
from runhours.fleet_workers import (
    FILES_PER_MACHINE,
    FILES_PER_PROCESS,
    MACHINES_PER_PROCESS,
    FleetTooLarge,
    plan_fleet,
    raise_open_files_limit,
)
from simulators import MachineSim, fleet
from simulators.spec import MACHINES_PER_LINE, line_id
from store import InfluxClient
from wire import telemetry_topic

START = datetime(2026, 3, 3, tzinfo=UTC)


def test_line_ids_count_like_spreadsheet_columns_and_never_repeat() -> None:
    assert [line_id(i) for i in (0, 1, 25, 26, 27, 51, 52)] == [
        "line-a", "line-b", "line-z", "line-aa", "line-ab", "line-az", "line-ba",
    ]  # fmt: skip
    assert (line_id(701), line_id(702), line_id(18_277), line_id(18_278)) == (
        "line-zz", "line-aaa", "line-zzz", "line-aaaa",
    )  # fmt: skip
    ids = [line_id(i) for i in range(20_000)]
    assert len(set(ids)) == len(ids)
    # Shorter first, then alphabetical: the order lines are numbered in.
    assert ids == sorted(ids, key=lambda s: (len(s), s))
    with pytest.raises(ValueError, match="line index"):
        line_id(-1)


@pytest.mark.parametrize("n", [1, 103, 104, 105, 2_000, MAX_MACHINES])
def test_every_id_of_every_fleet_size_makes_a_valid_distinct_topic(n: int) -> None:
    """Up to the largest fleet `runhours simulate` accepts (105 machines once failed)."""
    specs = fleet(n, start=START, site="plant1")
    assert len(specs) == n
    topics = {telemetry_topic(s.site, s.line, s.machine) for s in specs}  # raises if invalid
    assert len(topics) == n == len({s.machine for s in specs})
    per_line: dict[str, int] = {}
    for spec in specs:
        per_line[spec.line] = per_line.get(spec.line, 0) + 1
    assert len(per_line) == math.ceil(n / MACHINES_PER_LINE)
    assert set(per_line.values()) <= {*range(1, MACHINES_PER_LINE + 1)}
    assert specs[-1].line == line_id((n - 1) // MACHINES_PER_LINE)


def test_a_smaller_fleet_names_its_machines_as_the_start_of_the_largest() -> None:
    """Ids depend on the machine's index only, so the largest fleet's check above covers
    every size: each smaller fleet is its start (sampled every 97 sizes and at the edges)."""
    largest = [(s.line, s.machine) for s in fleet(MAX_MACHINES, start=START, site="plant1")]
    for n in sorted({*range(1, MAX_MACHINES + 1, 97), 2, 3, 4, 5, 104, 105, MAX_MACHINES}):
        specs = fleet(n, start=START, site="plant1", degrading=0)
        assert [(s.line, s.machine) for s in specs] == largest[:n], n


def test_fleet_plan_splits_by_the_open_files_limit() -> None:
    assert plan_fleet(12, 1024, 1024).processes == 1
    fits = (1024 - FILES_PER_PROCESS) // FILES_PER_MACHINE  # 308 machines a process
    plan = plan_fleet(1_000, 1024, 4096)
    assert plan.processes == math.ceil(1_000 / fits) == 4
    assert plan.per_process == 250 and plan.files_per_process <= 1024
    assert [len(s) for s in plan.slices(list(range(1_000)))] == [250] * 4  # type: ignore[arg-type]
    # A generous limit still splits past one event loop's share.
    assert plan_fleet(MAX_MACHINES, 1_048_576, 1_048_576).processes == math.ceil(
        MAX_MACHINES / MACHINES_PER_PROCESS
    )
    # Asked for: more processes than needed is fine, never more than machines.
    assert plan_fleet(12, 1024, 1024, processes=3).per_process == 4
    assert plan_fleet(2, 1024, 1024, processes=8).processes == 2
    with pytest.raises(FleetTooLarge, match=r"--processes 1: 1,000 machines need at least 4"):
        plan_fleet(1_000, 1024, 1024, processes=1)


def test_a_fleet_beyond_the_limit_is_refused_saying_what_to_change() -> None:
    with pytest.raises(FleetTooLarge) as raised:
        plan_fleet(MAX_MACHINES, 1024, 1024)
    message = str(raised.value)
    assert "a process may open 1,024 here (hard limit 1,024)" in message
    assert "ulimit -n 15360" in message and "LimitNOFILE=" in message
    assert "nofile" in message and "fewer machines" in message
    result = CliRunner().invoke(
        cli, ["simulate", "--machines", "10", "--processes", "0"], env={"COLUMNS": "200"}
    )
    assert result.exit_code == 2 and "--processes" in result.output


def test_the_open_files_limit_is_raised_to_the_hard_limit() -> None:
    soft, hard = raise_open_files_limit()
    assert (soft, hard) == resource.getrlimit(resource.RLIMIT_NOFILE)
    assert soft == hard or hard == resource.RLIM_INFINITY


def test_a_thousand_machines_through_the_pipeline_store_every_sample(
    settings: RunhoursSettings, influx: InfluxClient, test_id: str, tmp_path: Path
) -> None:
    """`runhours simulate --machines 1000` in two worker processes, through the shared broker
    and a real ingest of this test's site, into InfluxDB: every sample each machine
    produced is stored once, on that machine's own topic, with no sequence gap."""
    machines, days = 1_000, 0.01
    specs = fleet(machines, seed=7, start=START, site=test_id)
    end = START + timedelta(days=days)
    expected = {
        s.machine: len(MachineSim(s, START, sample_interval_s=10).advance(end)) for s in specs
    }
    ingest_settings = IngestSettings.from_base(
        settings, client_id=f"ingest-{test_id}", site=test_id
    )
    env = {
        "RUNHOURS_MQTT_URL": settings.mqtt_url,
        "RUNHOURS_DATA_DIR": str(tmp_path / "var"),
        "COLUMNS": "200",
    }
    args = ["simulate", "--machines", str(machines), "--days", str(days), "--seed", "7"]
    args += ["--site", test_id, "--start", "2026-03-03", "--no-progress", "--processes", "2"]
    args += ["--ground-truth", str(tmp_path / "truth.json")]
    with IngestService(ingest_settings) as ingest:
        assert ingest.wait_ready(30)
        result = CliRunner().invoke(cli, args, env=env)
        assert result.exit_code == 0, result.output
        total = sum(expected.values())
        assert "in 2 processes of up to 500 machines" in result.output
        rows = [line.split() for line in result.output.splitlines()]
        cells = next(row for row in rows if row[:1] == ["total"])
        assert cells == ["total", "1,000", f"{total:,}", f"{total:,}", "0", "0"], result.output
        assert "every machine: every sample acknowledged, none dropped" in result.output
        assert "simulator: 2 processes, peak RSS" in result.output
        # Readable at any size: totals per kind, no row per machine.
        assert len(result.output.splitlines()) < 2 * ROWS
        assert "cnc-01 " not in result.output
        deadline = time.monotonic() + 60  # the ingest may still be writing the last batches
        while influx.count("telemetry", "state") != expected and time.monotonic() < deadline:
            ingest.wait_idle(5)
            time.sleep(0.5)
        assert influx.count("telemetry", "state") == expected  # none lost, none doubled
        assert ingest.stats.gaps == 0 and ingest.stats.messages_invalid == 0
