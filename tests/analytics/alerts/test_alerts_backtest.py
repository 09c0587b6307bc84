"""The backtest scoreboard: the shipped rules on 20 simulated fleets, and one through the pipeline.

Each seed's fleet (12 machines for 7 days, one wearing out a bearing with a random wear
profile, a sample a minute) is replayed in process through the shipped rules
(``runhours.backtest``) and scored against its ground truth. The targets (docs/alerts.md):
median lead time ≥ 48 h, every failure warned ≥ 12 h ahead, ≤ 1 false alarm per 100
machine-days. The seeds (101-120) are not those the rules were tuned on (1-40).

One seed also goes the real way: simulator → edge agents → Mosquitto → ingest →
InfluxDB → ``runhours alerts backtest --failures ground-truth.json``; its scoreboard must
be the in-process one. So must a recorded run (CSV) replayed by ``runhours edge`` with
``until_end`` and backtested against a failures CSV. Run with ``-s`` to see the scoreboard.
"""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import pytest
from typer.testing import CliRunner

from analytics.alerts import DEFAULT_RULES, Alert, load_rules, parse_rules
from analytics.alerts.backtest import (
    ANY,
    Failure,
    FailuresError,
    Run,
    Scoreboard,
    machine_days,
    read_failures_csv,
    replay_window,
    score,
)
from analytics.alerts.model import alert_id
from analytics.alerts.samples import window_from_samples
from common.settings import RunhoursSettings
from edge.config import EdgeOptions, EdgeSettings
from ingest import IngestService, IngestSettings
from runhours.backtest import BACKTEST_START, SimulatedFleet, simulated_runs
from runhours.cli import app
from runhours.fleet import run_fleet
from simulators import WEAR_PROFILES, Degradation, MachineSim, MachineSpec, fleet
from store import InfluxClient
from tests.support.paths import REPO
from wire import MachineRef

SEEDS = range(101, 121)
PIPELINE_SEED = 101
HOUR = timedelta(hours=1)


@pytest.fixture(scope="module")
def runs() -> list[Run]:
    began = time.perf_counter()
    out = simulated_runs(load_rules(DEFAULT_RULES), SEEDS)
    print(f"\n{len(out)} simulated fleets replayed in {time.perf_counter() - began:.1f} s")
    return out


def show(board: Scoreboard) -> str:
    lines = [f"{'rule':28} failures missed median   min      false alarms /100 machine-days"]
    for r in board.rules:
        median = f"{r.median_lead / HOUR:6.1f} h" if r.median_lead is not None else "     -  "
        least = f"{r.min_lead / HOUR:6.1f} h" if r.min_lead is not None else "     -  "
        rate = r.false_alarm_rate or 0.0
        lines.append(
            f"{r.rule:28} {len(r.warnings):8} {r.missed:6} {median} {least} "
            f"{len(r.false_alarms):5} {rate:8.2f}"
        )
    return "\n".join(lines)


@pytest.mark.slow
def test_the_shipped_rules_meet_the_targets_on_20_seeds(runs: list[Run]) -> None:
    rules = load_rules(DEFAULT_RULES)
    board = score(runs, rules)
    print(show(board))
    total = board.rule(ANY)
    assert len(total.warnings) == len(SEEDS)  # one failure per fleet
    profiles = {w.failure.profile for w in total.warnings}
    assert profiles == set(WEAR_PROFILES), profiles
    assert total.missed == 0
    assert total.median_lead is not None and total.median_lead >= 48 * HOUR
    assert total.min_lead is not None and total.min_lead >= 12 * HOUR
    assert total.machine_days == pytest.approx(len(SEEDS) * 12 * 7)
    assert total.false_alarm_rate is not None and total.false_alarm_rate <= 1.0


@pytest.mark.slow
def test_one_seed_through_the_real_pipeline_scores_as_in_process(
    runs: list[Run],
    settings: RunhoursSettings,
    influx: InfluxClient,
    test_id: str,
    tmp_path: Path,
) -> None:
    setup = SimulatedFleet()
    end = setup.start + timedelta(days=setup.days)
    specs = fleet(
        setup.machines,
        seed=PIPELINE_SEED,
        start=setup.start,
        site=test_id,
        degrading=setup.degrading,
        profiles=setup.profiles,
    )
    truth = tmp_path / "ground-truth.json"
    edge = EdgeSettings(
        **settings.model_dump(include=set(RunhoursSettings.model_fields)),
        edge=EdgeOptions(site=test_id, max_batch=2000),
    )
    ingest = IngestSettings.from_base(settings, client_id=f"ingest-{test_id}", site=test_id)
    began = time.perf_counter()
    with IngestService(ingest) as service:
        assert service.wait_ready(30)
        fleet_run = asyncio.run(
            run_fleet(
                edge,
                specs,
                start=setup.start,
                end=end,
                speed=None,
                sample_interval_s=setup.sample_interval_s,
                ground_truth=truth,
            )
        )
        produced = {m.spec.machine: m.produced for m in fleet_run.machines}
        assert fleet_run.buffered == 0 and fleet_run.dropped == 0
        assert service.wait_idle(60)
    assert influx.count("telemetry", "state") == produced  # every sample stored, once
    piped = time.perf_counter() - began

    config = tmp_path / "runhours.toml"
    config.write_text(
        f'influx_url = "{settings.influx_url}"\ninflux_db = "{settings.influx_db}"\n'
        f'data_dir = "{settings.data_dir}"\n'
    )
    began = time.perf_counter()
    result = CliRunner().invoke(
        app,
        [
            "alerts",
            "backtest",
            "--config",
            str(config),
            "--rules",
            str(DEFAULT_RULES),
            "--from",
            BACKTEST_START.isoformat(),
            "--to",
            end.isoformat(),
            "--failures",
            str(truth),
            "--format",
            "json",
        ],
    )
    assert result.exit_code == 0, result.output
    print(
        f"\npipeline: {sum(produced.values())} samples stored in {piped:.1f} s; "
        f"backtest from InfluxDB in {time.perf_counter() - began:.1f} s"
    )
    stored = json.loads(result.stdout)
    (in_process,) = [r for r in runs if r.name == f"seed {PIPELINE_SEED}"]
    expected = score(
        [Run("", in_process.alerts, in_process.failures, in_process.machine_days)],
        load_rules(DEFAULT_RULES),
    ).to_json()
    assert stored == expected
    total = stored["rules"][-1]
    assert total["rule"] == ANY and total["warned"] == 1 and total["false_alarms"] == 0
    print(f"seed {PIPELINE_SEED}: {total['warnings'][0]}")


def test_a_recorded_run_replayed_from_csv_is_backtested_from_a_script(
    settings: RunhoursSettings, influx: InfluxClient, test_id: str, tmp_path: Path
) -> None:
    """A recorded week (CSV) → `runhours edge` with `until_end` (it exits by itself) →
    ingest → InfluxDB → `runhours alerts backtest --failures failures.csv`."""
    end = BACKTEST_START + timedelta(days=7)
    wear = Degradation(
        onset=BACKTEST_START + timedelta(days=1, hours=12),
        days_to_failure=3.0,
        profile="linear",
        level=0.05,
        noise=0.2,
    )
    spec = MachineSpec("comp-07", "compressor", site=test_id, seed=17, degradation=wear)
    sim = MachineSim(spec, BACKTEST_START, sample_interval_s=60)
    readings = sim.advance(end)
    names = list(readings[0].sample.values)
    recording = tmp_path / "comp-07.csv"
    recording.write_text(
        ",".join(["ts", "state", *names, "run_seconds_total"])
        + "\n"
        + "".join(
            ",".join(
                [str(r.sample.ts_ms), r.sample.state or ""]
                + [repr(r.sample.values[n]) for n in names]
                + [repr(r.counters["run_seconds_total"])]
            )
            + "\n"
            for r in readings
        )
    )
    assert sim.truth.failure_at is not None
    failures = tmp_path / "failures.csv"
    failures.write_text(f"machine,failed_at\ncomp-07,{sim.truth.failure_at.isoformat()}\n")
    shared = (
        f'mqtt_url = "{settings.mqtt_url}"\ninflux_url = "{settings.influx_url}"\n'
        f'influx_db = "{settings.influx_db}"\ndata_dir = "{settings.data_dir}"\n'
    )
    config = tmp_path / "runhours.toml"
    config.write_text(shared)
    edge_config = tmp_path / "edge.toml"
    edge_config.write_text(
        f'{shared}[edge]\nsite = "{test_id}"\nline = "line-a"\nmachine = "comp-07"\n'
        f'[edge.source]\ntype = "csv"\npath = "{recording}"\nuntil_end = true\n'
    )
    ingest = IngestSettings.from_base(settings, client_id=f"ingest-{test_id}", site=test_id)
    with IngestService(ingest) as service:
        assert service.wait_ready(30)
        agent = subprocess.run(
            [sys.executable, "-m", "runhours", "edge", "--config", str(edge_config)],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert agent.returncode == 0, agent.stdout + agent.stderr
        assert f"{len(readings)} published" in agent.stdout and "0 still buffered" in agent.stdout
        assert service.wait_idle(60)
    assert influx.count("telemetry", "state") == {"comp-07": len(readings)}

    result = CliRunner().invoke(
        app,
        [
            "alerts",
            "backtest",
            "--config",
            str(config),
            "--from",
            BACKTEST_START.isoformat(),
            "--to",
            end.isoformat(),
            "--failures",
            str(failures),
            "--format",
            "json",
        ],
    )
    assert result.exit_code == 0, result.output
    stored = json.loads(result.stdout)
    # The same recording scored in process: the same scoreboard.
    rules = load_rules(DEFAULT_RULES).conditions_only()
    ref = MachineRef(test_id, "line-a", "comp-07")
    window = window_from_samples(rules, BACKTEST_START, end, {ref: [r.sample for r in readings]})
    failure = Failure("comp-07", sim.truth.failure_at)
    run = Run("", replay_window(rules, window), [failure], machine_days(window))
    assert stored == score([run], rules).to_json()
    (warning,) = stored["rules"][-1]["warnings"]
    assert warning["lead_h"] >= 48, warning
    print(f"\nrecorded comp-07 (linear wear): {warning}")


def test_scoring_by_hand() -> None:
    rules = parse_rules(
        {
            "rule": [
                {"id": "a", "kind": "threshold", "value": "v", "above": 1.0},
                {"id": "b", "kind": "threshold", "value": "v", "above": 2.0},
                {"id": "silent", "kind": "no_data"},  # not scored
            ]
        }
    )
    failed = BACKTEST_START + timedelta(days=5)
    failure = Failure("m1", failed, onset=failed - timedelta(days=3))

    def alert(rule: str, machine: str, at: timedelta) -> Alert:
        since = failed + at
        return Alert(
            alert_id(rule, machine, since),
            rule,
            "threshold",
            machine,
            "s",
            "l",
            "warning",
            "resolved",
            since,
            started_at=since,
        )

    alerts = [
        alert("a", "m1", -timedelta(days=4)),  # before the wear began: a false alarm
        alert("a", "m1", -timedelta(hours=48)),  # the warning: 48 h ahead
        alert("a", "m1", -timedelta(hours=24)),  # a later one of the same incident
        alert("b", "m1", timedelta(hours=2)),  # while the machine is down: neither
        alert("b", "m2", timedelta(0)),  # the healthy machine: a false alarm
        alert("silent", "m2", timedelta(0)),  # no-data alerts are not scored
    ]
    board = score([Run("x", alerts, [failure], {"m1": 7.0, "m2": 7.0})], rules)
    assert [r.rule for r in board.rules] == ["a", "b", ANY]
    a, b, total = board.rules
    assert (a.min_lead, a.median_lead, a.missed, len(a.false_alarms)) == (
        48 * HOUR,
        48 * HOUR,
        0,
        1,
    )
    assert (b.min_lead, b.missed, len(b.false_alarms)) == (None, 1, 1)
    assert (total.min_lead, total.missed, len(total.false_alarms)) == (48 * HOUR, 0, 2)
    assert total.machine_days == 14.0 and total.false_alarm_rate == pytest.approx(100 * 2 / 14)
    # Without the onset, alerts up to the horizon (7 d) before the failure warned of it.
    plain = score([Run("x", alerts, [Failure("m1", failed)], {"m1": 7.0, "m2": 7.0})], rules)
    assert plain.rule("a").leads == [96 * HOUR]
    assert not plain.rule("a").false_alarms


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ("machine,when\n", "the header must be machine,failed_at[,onset]"),
        ("machine,failed_at\npump-01,2026-03-05T16:57:00\n", "has no time zone"),
        ("machine,failed_at\npump-01\n", "failures.csv:2: 1 cells, the header has 2"),
        (
            "machine,failed_at,onset\npump-01,2026-03-05T16:57:00Z,2026-03-06T00:00:00Z\n",
            "failures.csv:2: onset must be before failed_at",
        ),
    ],
)
def test_a_bad_failures_file_names_the_line(tmp_path: Path, text: str, error: str) -> None:
    path = tmp_path / "failures.csv"
    path.write_text(text)
    with pytest.raises(FailuresError, match=re.escape(error)):
        read_failures_csv(path)
    result = CliRunner().invoke(
        app, ["alerts", "backtest", "--from", "now-7d", "--to", "now", "--failures", str(path)]
    )
    assert result.exit_code == 2 and "--failures:" in result.output


@pytest.mark.slow
def test_backtest_simulate_in_the_cli_is_the_in_process_run(runs: list[Run]) -> None:
    result = CliRunner().invoke(
        app, ["alerts", "backtest", "--simulate", str(PIPELINE_SEED), "--format", "json"]
    )
    assert result.exit_code == 0, result.output
    (run,) = [r for r in runs if r.name == f"seed {PIPELINE_SEED}"]
    assert json.loads(result.stdout) == score([run], load_rules(DEFAULT_RULES)).to_json()
