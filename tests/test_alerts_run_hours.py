"""Service-interval rules count run-hours exactly as billing does (``machine_usage``).

A source that sends bare values (a CSV replay, a gateway) states the machine's state
only now and then; the value-only samples between are heartbeats that carry it
forward (docs/billing.md). Alerts must count the same hours as the invoice.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from analytics.alerts import parse_rules, replay
from analytics.usage import machine_usage
from contract import to_epoch_ms
from store import InfluxClient, Point

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
