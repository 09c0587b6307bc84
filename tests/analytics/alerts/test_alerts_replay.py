"""Rule evaluation replayed over telemetry in a real InfluxDB (`runhours alerts evaluate`).

Each test writes hand-made telemetry, replays the rules over it and checks the alerts
against times and values computed by hand. Evaluation steps are 1 min of data time:
the step ending at t sees the samples of [t - 1 min, t).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

from typer.testing import CliRunner

from analytics.alerts import parse_rules, replay
from analytics.alerts.conditions import NoDataCondition
from analytics.alerts.rules import NoDataRule
from analytics.alerts.window import MachineData
from common.settings import RunhoursSettings
from runhours.cli import app
from store import InfluxClient, Point
from wire import MachineRef, to_epoch_ms

T0 = datetime(2026, 3, 2, tzinfo=UTC)  # a Monday, 00:00 UTC
TAGS = {"site": "plant1", "line": "line-a"}


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


def sample(machine: str, ts: datetime, state: str | None = "running", **values: float) -> Point:
    fields: dict[str, float | str] = {k: float(v) for k, v in values.items()}
    if state is not None:
        fields["state"] = state
    return Point("telemetry", {**TAGS, "machine": machine}, fields, to_epoch_ms(ts))


def status(machine: str, ts: datetime, online: bool) -> Point:
    return Point(
        "machine_status", {**TAGS, "machine": machine}, {"online": float(online)}, to_epoch_ms(ts)
    )


def config_file(settings: RunhoursSettings, tmp_path: Path) -> Path:
    path = tmp_path / "runhours.toml"
    path.write_text(
        f'influx_url = "{settings.influx_url}"\ninflux_db = "{settings.influx_db}"\n'
        f'mqtt_url = "{settings.mqtt_url}"\ndata_dir = "{settings.data_dir}"\n'
    )
    return path


def evaluate_json(
    config: Path, rules: Path, start: datetime, end: datetime
) -> list[dict[str, object]]:
    result = CliRunner().invoke(
        app,
        [
            "alerts",
            "evaluate",
            "--config",
            str(config),
            "--rules",
            str(rules),
            "--from",
            start.isoformat(),
            "--to",
            end.isoformat(),
            "--format",
            "json",
        ],
    )
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)  # type: ignore[no-any-return]


FLAP_RULES = """
step = "1m"
[[rule]]
id = "vibration-critical"
kind = "threshold"
value = "vibration_mm_s"
above = 4.5
for = "10m"
clear_below = 4.0
severity = "critical"
machines = ["*"]
"""


def test_oscillation_inside_the_deadband_raises_one_alert_and_replays_identically(
    influx: InfluxClient, settings: RunhoursSettings, tmp_path: Path
) -> None:
    points = []
    for minute in range(180):
        ts = at(minute)
        # pump-01: calm 30 min, 5.0 for 20 min (fires after 10), then 60 min swinging
        # 4.2 <-> 4.8 every minute (inside the deadband 4.0..4.5 and above), then 3.0.
        if minute < 30:
            v = 2.0
        elif minute < 50:
            v = 5.0
        elif minute < 110:
            v = 4.8 if minute % 2 else 4.2
        else:
            v = 3.0
        points.append(sample("pump-01", ts, vibration_mm_s=v))
        # pump-02: swings 4.3 <-> 4.7 every minute all the time: never 10 min above 4.5.
        points.append(
            sample("pump-02", ts + timedelta(seconds=20), vibration_mm_s=4.7 if minute % 2 else 4.3)
        )
    influx.write(points)
    rules = tmp_path / "rules.toml"
    rules.write_text(FLAP_RULES)
    config = config_file(settings, tmp_path)

    first = evaluate_json(config, rules, at(0), at(180))
    assert first == [
        {
            "id": first[0]["id"],
            "rule": "vibration-critical",
            "machine": "pump-01",
            "severity": "critical",
            "started_at": "2026-03-02T00:40:00Z",  # pending from 00:30, held for 10 min
            "resolved_at": "2026-03-02T01:51:00Z",  # the step that saw 3.0 (< clear_below 4.0)
            "value": 5.0,
        }
    ]
    # Same data → byte-identical alerts, ids included.
    assert evaluate_json(config, rules, at(0), at(180)) == first


SERVICE_RULES = """
step = "1m"
renotify = "0s"
[kinds]
cnc_mill = ["cnc-*"]
[[rule]]
id = "service-cnc"
kind = "service_interval"
hours = 10
warn_fraction = 0.8
warn_severity = "warning"
severity = "critical"
kinds = ["cnc_mill"]
"""


def test_service_interval_fires_at_the_hand_computed_run_hour_and_clears_on_service(
    influx: InfluxClient, settings: RunhoursSettings, tmp_path: Path
) -> None:
    # cnc-01 runs 06:00-12:00 every day and idles otherwise, one sample a minute, from
    # Monday 00:00 (its first data: no service recorded yet, so hours count from there).
    points = []
    for minute in range(3 * 24 * 60):
        hour = (minute // 60) % 24
        points.append(
            sample(
                "cnc-01", at(minute), "running" if 6 <= hour < 12 else "idle", spindle_current_a=1.0
            )
        )
    influx.write(points)
    rules = parse_rules({"step": "1m", **_toml(SERVICE_RULES)})
    # By hand: 6 h on Monday; 8 h (80 %) at Tuesday 08:00; 10 h (100 %) at Tuesday 10:00.
    result = replay(influx, rules, at(0), at(2 * 24 * 60))
    kinds = [(t.kind, t.at, t.alert.severity, t.alert.value) for t in result.transitions]
    tuesday = T0 + timedelta(days=1)
    assert kinds == [
        ("firing", tuesday + timedelta(hours=8), "warning", 8.0),
        ("escalated", tuesday + timedelta(hours=10), "critical", 8.0),
    ]
    assert result.alerts[0].state == "firing"
    assert result.alerts[0].last_value == 12.0  # run-hours at the end of Tuesday

    # A window that starts Tuesday 00:00 still counts Monday's 6 h (from the first data).
    later = replay(influx, rules, tuesday, tuesday + timedelta(hours=12))
    assert [(t.kind, t.at) for t in later.transitions][:1] == [
        ("firing", tuesday + timedelta(hours=8))
    ]

    # Serviced on Tuesday at 13:00: the alert clears at that step; Wednesday's 6 h stay under 8.
    config = config_file(settings, tmp_path)
    out = CliRunner().invoke(
        app,
        [
            "maintenance",
            "record",
            "--config",
            str(config),
            "--machine",
            "cnc-01",
            "--kind",
            "service",
            "--at",
            "2026-03-03T13:00:00Z",
            "--note",
            "WO-4711",
            "--by",
            "jdoe",
        ],
    )
    assert out.exit_code == 0, out.output
    assert "recorded service on cnc-01 (plant1/line-a)" in out.output
    after = replay(influx, rules, at(0), at(3 * 24 * 60))
    assert [(t.kind, t.at) for t in after.transitions] == [
        ("firing", tuesday + timedelta(hours=8)),
        ("escalated", tuesday + timedelta(hours=10)),
        ("resolved", tuesday + timedelta(hours=13)),
    ]
    assert (
        replay(influx, rules, tuesday + timedelta(days=1), tuesday + timedelta(days=2)).alerts == []
    )
    # A record for an unknown machine is refused with a reason.
    bad = CliRunner().invoke(
        app, ["maintenance", "record", "--config", str(config), "--machine", "cnc-99"]
    )
    assert bad.exit_code == 2 and "no telemetry for 'cnc-99'" in bad.output


def _toml(text: str) -> dict[str, object]:
    import tomllib

    return tomllib.loads(text)


NO_DATA_RULES = """
step = "1m"
[[rule]]
id = "no-data"
kind = "no_data"
silent_for = "5m"
offline_for = "1m"
severity = "critical"
machines = ["*"]
"""


def test_no_data_fires_on_silence_or_offline_status_and_resolves_on_return(
    influx: InfluxClient,
) -> None:
    points = []
    for i in range(0, 3 * 60 * 2):  # a sample every 30 s for 3 h, silent 01:00-01:30
        ts = at(i / 2)
        if at(60) <= ts < at(90):
            continue
        points.append(sample("comp-01", ts, vibration_mm_s=1.0))
        points.append(sample("comp-02", ts, vibration_mm_s=1.0))
    # comp-01's agent dies at 01:00 (its MQTT will: offline) and is back at 01:30.
    points += [
        status("comp-01", at(0), True),
        status("comp-01", at(60), False),
        status("comp-01", at(90), True),
    ]
    influx.write(points)
    rules = parse_rules(_toml(NO_DATA_RULES))
    result = replay(influx, rules, at(0), at(180))
    summary = [(a.machine, a.started_at, a.resolved_at, a.summary) for a in result.alerts]
    assert summary == [
        # The will: offline since 01:00, fires once it stood offline_for (1 min).
        ("comp-01", at(61), at(91), "agent offline (status/will)"),
        # Plain silence: last sample 00:59:30 (seen in the step ending 01:00), > 5 min at 01:06.
        ("comp-02", at(66), at(91), "no telemetry for 360 s"),
    ]
    # A window that starts while the machine is already silent still sees it (lookback).
    late = replay(influx, rules, at(70), at(80))
    assert [(a.machine, a.started_at) for a in late.alerts] == [
        ("comp-01", at(71)),
        ("comp-02", at(71)),
    ]


def test_no_data_resolves_on_telemetry_after_the_will_even_without_its_online_status() -> None:
    """The agent's "online" status can reach the database after the steps it belongs to
    were evaluated (an ingest slower than the settle time); telemetry in a step that began
    after the will still proves the agent is back. Telemetry in the step the will fell in
    (the agent's last samples before it died) does not."""

    rule = NoDataRule.model_validate(
        {"id": "nd", "kind": "no_data", "silent_for": "5s", "offline_for": "1s"}
    )
    will = 10_500  # the offline status, dated at its arrival
    data = MachineData(
        ref=MachineRef("plant1", "line-a", "cnc-01"),
        seen=frozenset({10_000, 11_000, 30_000, 31_000}),  # step ends: [9, 10) … [30, 31) s
        status=((will, False),),
    )
    condition = NoDataCondition(rule, data, step_s=1.0)
    memory: dict[str, object] = {}
    verdicts = {t: condition(t, memory, active=True) for t in range(10_000, 32_000, 1000)}
    assert verdicts[11_000].clear is False  # the step [10, 11) s holds the will itself
    assert verdicts[12_000].trigger and verdicts[12_000].summary == "agent offline (status/will)"
    assert verdicts[29_000].trigger
    assert verdicts[31_000].clear and not verdicts[31_000].trigger  # [30, 31) s: data again


def test_no_data_counts_telemetry_that_arrived_after_its_steps_were_evaluated() -> None:
    """An ingest slower than the settle time stores samples into steps already evaluated;
    the next window sees them only as "last seen before the window". They count: the
    machine is not silent, and its alert resolves."""
    rule = NoDataRule.model_validate({"id": "nd", "kind": "no_data", "silent_for": "5s"})
    ref = MachineRef("plant1", "line-a", "cnc-01")
    memory: dict[str, object] = {}
    first = NoDataCondition(rule, MachineData(ref=ref, last_seen_before=1_000), step_s=1.0)
    assert first(10_000, memory, active=False).trigger  # silent for 9 s: fires
    # The next window [10, 20) s: nothing inside it yet, but a sample stamped 9.5 s landed.
    second = NoDataCondition(rule, MachineData(ref=ref, last_seen_before=9_500), step_s=1.0)
    verdict = second(11_000, memory, active=True)
    assert verdict.clear and verdict.value == 1.5
