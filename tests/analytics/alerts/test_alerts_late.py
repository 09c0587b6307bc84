"""Late data in the live service: an edge replaying its buffer after an uplink outage.

The service runs cycles on a simulated clock (one a minute, ``cycle(now=…)``) against
the real InfluxDB; before each cycle the test writes the samples that have "arrived" by
then. pump-01's uplink is down from 01:00 to 02:10: its samples of that stretch, which
hold a 30-minute vibration incident, arrive all at once at 02:10 (as an edge agent
replays its buffer). pump-02 reports on time throughout and has its own incident.
"""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

from analytics.alerts import AlertStore, EngineState, load_rules, replay
from analytics.service import AnalyticsOptions, AnalyticsService, AnalyticsSettings
from common.settings import RunhoursSettings
from store import InfluxClient, Point
from wire import to_epoch_ms

T0 = datetime(2026, 3, 2, tzinfo=UTC)  # data time 00:00
SETTLE = timedelta(seconds=5)

RULES = """
step = "1m"
renotify = "0s"
[[rule]]
id = "vib"
kind = "threshold"
value = "vibration_mm_s"
above = 4.5
for = "10m"
clear_below = 4.0
severity = "critical"
states = ["running"]

[[rule]]
id = "drift"
kind = "anomaly"
value = "vibration_mm_s"
baseline = "2h"
window = "5m"
warmup = "30m"
sigma = 4.0
clear_sigma = 2.0
min_std = 0.2
for = "5m"
clear_for = "5m"
severity = "warning"

[[rule]]
id = "silent"
kind = "no_data"
silent_for = "5m"
severity = "critical"
"""


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


def vibration(machine: str, minutes: float) -> float:
    high = (70, 100) if machine == "pump-01" else (80, 95)
    if high[0] <= minutes < high[1]:
        return 6.0
    return 1.0 + 0.05 * ((int(minutes * 2) * 7) % 5 - 2)  # a little deterministic wobble


def arrival(machine: str, minutes: float) -> float:
    """When a sample reaches InfluxDB: pump-01's 01:00-02:10 backlog lands at 02:10."""
    if machine == "pump-01" and 60 <= minutes < 130:
        return 130
    return minutes


def samples(arrived_after: float, arrived_by: float) -> list[Point]:
    points = []
    for machine in ("pump-01", "pump-02"):
        for half in range(0, 180 * 2 + 1):  # a sample every 30 s, 00:00-03:00
            minutes = half / 2
            if arrived_after < arrival(machine, minutes) <= arrived_by:
                fields: dict[str, float | str] = {
                    "vibration_mm_s": vibration(machine, minutes),
                    "state": "running",
                }
                tags = {"site": "plant1", "line": "line-a", "machine": machine}
                points.append(Point("telemetry", tags, fields, to_epoch_ms(at(minutes))))
    return points


def make_service(settings: RunhoursSettings, tmp_path: Path) -> AnalyticsService:
    rules = tmp_path / "rules.toml"
    rules.write_text(RULES)
    options = AnalyticsOptions(
        rules=rules,
        settle=SETTLE,
        start_lookback=timedelta(minutes=1),
        mqtt=False,
        influx=False,
        rollups=False,
    )
    return AnalyticsService(AnalyticsSettings(**{**settings.model_dump(), "analytics": options}))


def key(alert: object) -> tuple[object, ...]:
    return tuple(
        getattr(alert, name)
        for name in (
            "id",
            "rule",
            "machine",
            "severity",
            "pending_since",
            "started_at",
            "resolved_at",
            "value",
        )
    )


def test_late_data_is_evaluated_when_it_lands_and_matches_a_replay(
    influx: InfluxClient, settings: RunhoursSettings, tmp_path: Path
) -> None:
    service = make_service(settings, tmp_path)
    seen: dict[int, dict[str, datetime]] = {}
    raised_before_backlog: list[tuple[str, str]] = []
    try:
        clock = 0.0
        for minute in range(1, 181):
            now = minute + 10 / 60  # 10 s past each minute (5 s settle)
            points = samples(clock, now)
            if points:
                influx.write(points)
            clock = now
            if minute == 110:  # restart mid-outage: cursors and memory come from SQLite
                service.close()
                service = make_service(settings, tmp_path)
            service.cycle(now=at(now))
            if minute in (100, 129, 130):
                seen[minute] = service.store.cursors()
            if minute == 129:
                raised_before_backlog = [(a.rule, a.machine) for a in service.store.alerts()]
    finally:
        service.close()
    store = AlertStore.in_data_dir(settings.data_dir)

    # While the uplink is down, pump-01's data-time rules wait at its last sample;
    # pump-02's are not held back. The backlog lands at 02:10 and pump-01 catches up.
    assert seen[100] == {"pump-01": at(59), "pump-02": at(100)}
    assert seen[129] == {"pump-01": at(59), "pump-02": at(129)}
    assert seen[130] == {"pump-01": at(130), "pump-02": at(130)}
    # Before the backlog landed only the silence was known (and pump-02's incident).
    assert sorted(raised_before_backlog) == [
        ("drift", "pump-02"),
        ("silent", "pump-01"),
        ("vib", "pump-02"),
    ]

    alerts = {(a.rule, a.machine): a for a in store.alerts()}
    assert len(alerts) == len(store.alerts())  # exactly one alert per (rule, machine)
    vib1 = alerts[("vib", "pump-01")]
    # Above 4.5 from 01:10 (data time): pending then, fires after `for` (10 min) at 01:20,
    # back under 4.0 at 01:40: resolved at the end of that step, 01:41.
    assert (vib1.pending_since, vib1.started_at, vib1.resolved_at, vib1.value) == (
        at(70),
        at(80),
        at(101),
        6.0,
    )
    vib2 = alerts[("vib", "pump-02")]
    assert (vib2.pending_since, vib2.started_at, vib2.resolved_at) == (at(80), at(90), at(96))
    # Silence is reported in wall-clock time: last sample 00:59:30 (step ending 01:00),
    # silent > 5 min at 01:06; resolved when data returns with the 02:10 cycle.
    silent = alerts[("silent", "pump-01")]
    assert (silent.started_at, silent.resolved_at) == (at(66), at(130))
    history = store.history()
    assert [h["event"] for h in history if h["alert"]["id"] == vib1.id] == ["firing", "resolved"]

    # A replay over the same stretch, once everything has landed, concludes the same
    # condition alerts: same ids, pending and start times, resolutions and values.
    rules = load_rules(tmp_path / "rules.toml")
    again = replay(influx, rules, at(0), at(180))
    live_conditions = sorted(key(a) for a in store.alerts() if a.rule != "silent")
    replay_conditions = sorted(key(a) for a in again.alerts if a.rule != "silent")
    assert live_conditions == replay_conditions
    assert {(a.rule, a.machine) for a in again.alerts} == {
        ("vib", "pump-01"),
        ("vib", "pump-02"),
        ("drift", "pump-01"),
        ("drift", "pump-02"),
    }  # the replay sees no silence: the data is all there now
    drift1 = alerts[("drift", "pump-01")]
    assert drift1.started_at is not None and at(70) < drift1.started_at <= at(100)
    live_events = sorted(
        (h["at"], h["event"], h["alert"]["id"]) for h in history if h["alert"]["rule"] != "silent"
    )
    replay_events = sorted(
        (t.at.isoformat().replace("+00:00", "Z"), t.kind, t.alert.id)
        for t in again.transitions
        if t.alert.rule != "silent"
    )
    assert live_events == replay_events
    print(
        f"\nlate vib alert: pending {vib1.pending_since:%H:%M}, fired {vib1.started_at:%H:%M}, "
        f"resolved {vib1.resolved_at:%H:%M} (data time), raised by the 02:10 cycle; "
        f"drift fired {drift1.started_at:%H:%M}; {len(history)} transitions"
    )


def test_a_store_from_before_machine_cursors_continues_where_it_stopped(
    influx: InfluxClient, settings: RunhoursSettings, tmp_path: Path
) -> None:
    # An alert store written by the previous version: one global `until` (01:00).
    store = AlertStore.in_data_dir(settings.data_dir)
    store.commit(EngineState(until=at(60)), [])
    with sqlite3.connect(store.path) as db:
        db.execute("DROP TABLE machine_cursors")
        db.execute("DELETE FROM meta WHERE key = 'origin'")
        db.execute("PRAGMA user_version = 0")
    # pump-01 above the threshold from 00:30 to 01:30; the old service had walked to 01:00.
    influx.write(
        Point(
            "telemetry",
            {"site": "plant1", "line": "line-a", "machine": "pump-01"},
            {"vibration_mm_s": 6.0, "state": "running"},
            to_epoch_ms(at(30 + i / 2)),
        )
        for i in range(0, 60 * 2)
    )
    service = make_service(settings, tmp_path)
    try:
        assert service.store.meta("origin") == str(to_epoch_ms(at(60)))
        assert service.store.cursors() == {}
        result = service.cycle(now=at(90) + SETTLE)
    finally:
        service.close()
    # Steps up to 01:00 are not walked again: the condition is first seen 01:00-01:01.
    assert [(t.kind, t.alert.pending_since, t.alert.started_at) for t in result.transitions] == [
        ("firing", at(60), at(70))
    ]
    assert service.store.cursors() == {"pump-01": at(89)}  # last sample 01:29:30
