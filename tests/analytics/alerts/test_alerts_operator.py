"""Operator actions against the live service's memory (real InfluxDB, SQLite store)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from analytics.service import AnalyticsOptions, AnalyticsService, AnalyticsSettings
from common.settings import RunhoursSettings
from store import InfluxClient, Point
from wire import to_epoch_ms

T0 = datetime(2026, 3, 2, 6, 0, tzinfo=UTC)
RULES = """
step = "1m"
renotify = "0s"
[[rule]]
id = "vib"
kind = "threshold"
value = "vibration_mm_s"
above = 4.5
for = "2m"
clear_below = 4.0
clear_for = "5m"
severity = "critical"
"""


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


def service_for(settings: RunhoursSettings, tmp_path: Path) -> AnalyticsService:
    rules = tmp_path / "rules.toml"
    rules.write_text(RULES)
    options = AnalyticsOptions(
        rules=rules,
        start_lookback=timedelta(hours=1),
        mqtt=False,
        influx=False,
        rollups=False,
    )
    return AnalyticsService(AnalyticsSettings(**{**settings.model_dump(), "analytics": options}))


def test_after_a_manual_resolve_the_next_alert_still_waits_clear_for(
    influx: InfluxClient, settings: RunhoursSettings, tmp_path: Path
) -> None:
    # 5.0 (fires), 3.0 from 00:10 (clearing, not yet for 5 min when the operator resolves),
    # 5.0 again 00:20-00:22 (a new alert, just long enough to fire), then 3.0: the new
    # alert must stay clear for its own 5 min before it resolves.
    def level(minute: int) -> float:
        return 5.0 if minute < 10 or 20 <= minute < 22 else 3.0

    influx.write(
        Point(
            "telemetry",
            {"site": "plant1", "line": "line-a", "machine": "pump-01"},
            {"vibration_mm_s": level(m), "state": "running"},
            to_epoch_ms(at(m) + timedelta(seconds=10)),
        )
        for m in range(41)
    )
    service = service_for(settings, tmp_path)
    try:
        first = service.cycle(now=at(12) + timedelta(seconds=5))
        assert [(t.kind, t.at) for t in first.transitions] == [("firing", at(2))]
        service.store.resolve(first.transitions[0].alert.id, by="jdoe", note="checked")

        second = service.cycle(now=at(40) + timedelta(seconds=5))
    finally:
        service.close()
    # By hand: pending from 00:20, fires at 00:22; clear from 00:22, resolves at 00:27
    # (not at 00:23 on the first alert's clearing timer, left over from 00:10).
    assert [(t.kind, t.at) for t in second.transitions] == [
        ("firing", at(22)),
        ("resolved", at(27)),
    ]


def test_alerts_of_a_machine_the_rule_no_longer_selects_are_resolved_at_start(
    settings: RunhoursSettings, tmp_path: Path
) -> None:
    from analytics.alerts import Alert, AlertStore, Transition

    # comp-01 had a `vib` alert; the rule now watches pumps only: nothing would ever clear
    # it (the machine is not evaluated for that rule any more), so it stayed active forever.
    old = Alert(
        id="abcdef0123",
        rule="vib",
        rule_kind="threshold",
        machine="comp-01",
        site="plant1",
        line="line-a",
        severity="critical",
        state="firing",
        pending_since=T0,
        started_at=T0,
    )
    store = AlertStore.in_data_dir(settings.data_dir)
    store.record([Transition("firing", T0, old)])
    rules = tmp_path / "rules.toml"
    rules.write_text(RULES + 'machines = ["pump-*"]\n')
    options = AnalyticsOptions(rules=rules, mqtt=False, influx=False, rollups=False)
    service = AnalyticsService(AnalyticsSettings(**{**settings.model_dump(), "analytics": options}))
    service.close()
    final = store.get(old.id)
    assert (final.state, final.resolved_by) == ("resolved", "rules")
    assert store.history(old.id)[-1]["note"] == f"rule 'vib' no longer watches comp-01 in {rules}"
