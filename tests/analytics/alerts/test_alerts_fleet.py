"""A simulated week: the degrading machine is warned about before it fails, healthy ones never.

Twelve simulated machines (one wearing out a bearing) write a week of telemetry (a
sample a minute plus every state change) to InfluxDB; the shipped rules are replayed
over it. The lead time of the first condition alert is printed (run with ``-s``).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from analytics.alerts import DEFAULT_RULES, first_condition_alert, lead_time, load_rules, replay
from simulators import MachineSim, fleet
from store import InfluxClient, Point

START = datetime(2026, 3, 2, tzinfo=UTC)
DAYS = 7


def write_fleet(influx: InfluxClient, seed: int) -> dict[str, datetime]:
    """Simulate and store the fleet; returns the failure time of each degrading machine."""
    failures = {}
    for spec in fleet(12, start=START, seed=seed):
        sim = MachineSim(spec, START, sample_interval_s=60)
        tags = {"site": spec.site, "line": spec.line, "machine": spec.machine}
        points = []
        for reading in sim.advance(START + timedelta(days=DAYS)):
            fields: dict[str, float | str] = dict(reading.sample.values)
            if reading.sample.state is not None:
                fields["state"] = reading.sample.state
            fields.update(reading.counters)
            points.append(Point("telemetry", tags, fields, reading.sample.ts_ms))
        for i in range(0, len(points), 10_000):
            influx.write(points[i : i + 10_000])
        if sim.failure_at is not None:
            failures[spec.machine] = sim.failure_at
    return failures


def test_week_of_a_fleet_warns_before_the_failure_and_never_on_healthy_machines(
    influx: InfluxClient,
) -> None:
    failures = write_fleet(influx, seed=1)
    assert len(failures) == 1
    ((machine, failure_at),) = failures.items()
    result = replay(influx, load_rules(DEFAULT_RULES), START, START + timedelta(days=DAYS))

    first = first_condition_alert(result.alerts, machine)
    lead = lead_time(result.alerts, machine, failure_at)
    assert first is not None and lead is not None
    print(
        f"\n{machine} fails at {failure_at:%Y-%m-%d %H:%M}Z; first condition alert "
        f"{first.rule} at {first.started_at:%Y-%m-%d %H:%M}Z: lead time {lead}"
    )
    assert lead >= timedelta(hours=12)
    condition = [a for a in result.alerts if a.rule_kind in ("threshold", "anomaly")]
    assert {a.machine for a in condition} == {machine}, [(a.machine, a.rule) for a in condition]
    # One alert per rule for the whole incident: the deadbands and clear_for hold.
    rules_hit = [a.rule for a in condition]
    assert len(rules_hit) == len(set(rules_hit)), rules_hit
    # No machine went silent, none is due for service within a week.
    assert [a for a in result.alerts if a.rule_kind not in ("threshold", "anomaly")] == []
