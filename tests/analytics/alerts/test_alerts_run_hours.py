"""Service-interval rules count run-hours exactly as billing does (``machine_usage``).

A source that sends bare values (a CSV replay, a gateway) states the machine's state
only now and then; the value-only samples between are heartbeats that carry it
forward (docs/billing.md). Alerts must count the same hours as the invoice.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from analytics.alerts import parse_rules, replay
from analytics.usage import machine_usage
from store import InfluxClient, Point
from wire import to_epoch_ms

T0 = datetime(2026, 3, 2, tzinfo=UTC)
TAGS = {"site": "plant1", "line": "line-a", "machine": "cnc-01"}

RULES = {
    "step": "1m",
    "renotify": "0s",
    "kinds": {"cnc_mill": ["cnc-*"]},
    "rule": [
        {
            "id": "service-cnc",
            "kind": "service_interval",
            "hours": 2,
            "warn_fraction": 0.5,
            "severity": "critical",
            "kinds": ["cnc_mill"],
        }
    ],
}


def heartbeat_telemetry() -> list[Point]:
    """A state once an hour, value-only samples every minute between: running 4 h, then idle."""
    points = []
    for minute in range(6 * 60):
        fields: dict[str, float | str] = {"spindle_current_a": 1.0}
        if minute % 60 == 0:
            fields["state"] = "running" if minute < 4 * 60 else "idle"
        ts = T0 + timedelta(minutes=minute)
        points.append(Point("telemetry", TAGS, fields, to_epoch_ms(ts)))
    return points


def test_service_interval_counts_heartbeat_hours_like_billing(influx: InfluxClient) -> None:
    influx.write(heartbeat_telemetry())
    end = T0 + timedelta(hours=6)
    billed = machine_usage(influx, "cnc-01", T0, end).running_seconds / 3600
    assert billed == 4.0  # the heartbeats carry `running` from 00:00 to 04:00

    rules = parse_rules(RULES)
    result = replay(influx, rules, T0, end)
    # By hand: 1 h (50 %) at 01:00, 2 h (100 %) at 02:00, 4 h run when the window ends.
    assert [(t.kind, t.at, t.alert.severity) for t in result.transitions] == [
        ("firing", T0 + timedelta(hours=1), "warning"),
        ("escalated", T0 + timedelta(hours=2), "critical"),
    ]
    assert result.alerts[0].last_value == billed

    # A window that starts mid-way counts the hours before it with the usage engine and
    # the hours inside from the samples: the two halves agree with billing too.
    later = replay(influx, rules, T0 + timedelta(hours=3), end)
    assert [(t.kind, t.at, t.alert.severity) for t in later.transitions] == [
        ("firing", T0 + timedelta(hours=3, minutes=1), "critical")  # due at its first step
    ]
    assert later.alerts[0].value == round(3 + 1 / 60, 4)
    assert later.alerts[0].last_value == billed


def test_the_fleet_read_gives_each_machine_what_its_own_read_gives(influx: InfluxClient) -> None:
    """``load_samples_by_id`` (one read for the fleet) equals ``load_samples`` per machine:
    a machine sampled every 10 s, one whose state comes once an hour (its chain starts far
    before the window), one silent since before it, one at two sites, one never seen."""
    import random

    import numpy as np

    from analytics.alerts.run_hours import running_seconds_since
    from analytics.usage import load_samples, load_samples_by_id
    from wire import from_epoch_ms

    rng = random.Random(3)
    points = heartbeat_telemetry()  # cnc-01: a state once an hour
    for machine, sites in (("pump-01", ("plant1",)), ("comp-01", ("plant1", "plant2"))):
        for k in range(6 * 360):
            ts = to_epoch_ms(T0 + timedelta(seconds=10 * k))
            fields: dict[str, float | str] = {"state": rng.choice(["running", "idle", "fault"])}
            if k % 60 == 0:
                fields["run_seconds_total"] = 3600.0 + k * 10
            for site in sites:
                tags = {"site": site, "line": "line-b", "machine": machine}
                points.append(Point("telemetry", tags, fields, ts + (site == "plant2")))
    silent = {"site": "plant1", "line": "line-c", "machine": "comp-02"}
    points.append(Point("telemetry", silent, {"state": "running"}, to_epoch_ms(T0)))
    influx.write(points)
    names = ["cnc-01", "pump-01", "comp-01", "comp-02", "nowhere"]
    for lo_h, hi_h in ((2.5, 3.0), (0.0, 6.0), (5.9, 6.2)):
        lo = to_epoch_ms(T0 + timedelta(hours=lo_h))
        hi = to_epoch_ms(T0 + timedelta(hours=hi_h))
        fleet = load_samples_by_id(influx, names, lo, hi)
        for name in names:
            one, many = load_samples(influx, name, lo, hi), fleet[name]
            assert np.array_equal(one.ts_ms, many.ts_ms), (name, lo_h)
            assert np.array_equal(one.codes, many.codes), (name, lo_h)
            assert np.array_equal(one.counter_ts_ms, many.counter_ts_ms), (name, lo_h)
            assert np.array_equal(one.counter_ms, many.counter_ms), (name, lo_h)
            assert one.counter_previous == many.counter_previous, (name, lo_h)
        # And the running seconds the service-interval rules add are billing's.
        ran = running_seconds_since(influx, dict.fromkeys(names, lo), hi)
        for name in names[:4]:
            billed = machine_usage(influx, name, from_epoch_ms(lo), from_epoch_ms(hi))
            assert ran[name] == billed.running_seconds, (name, lo_h)
