"""A slow drift is warned of before it goes far: +25 % over 3 days alerts before +35 %.

Healthy simulated machines (one of each kind) write a week of telemetry to InfluxDB; on
three of them the vibration is made to drift up linearly from Monday 16:00 (after the
first day's commissioning), by +25 % every 3 days, so it is +35 % 4.2 days later (Friday
20:48, while the machines still run). The shipped rules are replayed over the week:
each drifting machine must be warned of before +35 %, its healthy twin (same seed, no
drift) never. An adaptive baseline learns a drift this slow as normal: the rules that
catch it compare each machine with its commissioning reference.

Written against APIs that predate commissioning references, so it runs (and fails on
the timing) against the rules and engine before them.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from analytics.alerts import DEFAULT_RULES, first_condition_alert, load_rules, replay
from simulators import MachineSim, MachineSpec
from store import InfluxClient, Point

START = datetime(2026, 3, 2, tzinfo=UTC)  # a Monday
END = START + timedelta(days=7)
ONSET = START + timedelta(hours=16)
RATE = 0.25 / timedelta(days=3).total_seconds()  # share of the healthy level per second
AT_35 = ONSET + timedelta(seconds=0.35 / RATE)  # Friday 20:48


def write_machine(influx: InfluxClient, spec: MachineSpec, drifting: bool) -> None:
    sim = MachineSim(spec, START, sample_interval_s=60)
    tags = {"site": spec.site, "line": spec.line, "machine": spec.machine}
    points = []
    for reading in sim.advance(END):
        fields: dict[str, float | str] = dict(reading.sample.values)
        if drifting and reading.sample.ts > ONSET:
            drift = RATE * (reading.sample.ts - ONSET).total_seconds()
            fields["vibration_mm_s"] = round(float(fields["vibration_mm_s"]) * (1 + drift), 3)
        if reading.sample.state is not None:
            fields["state"] = reading.sample.state
        points.append(Point("telemetry", tags, fields, reading.sample.ts_ms))
    for i in range(0, len(points), 10_000):
        influx.write(points[i : i + 10_000])


def test_a_slow_drift_alerts_before_it_reaches_plus_35_percent(influx: InfluxClient) -> None:
    kinds = {"cnc": "cnc_mill", "pump": "pump", "comp": "compressor"}
    for prefix, kind in kinds.items():
        for number, drifting in ((1, True), (2, False)):
            spec = MachineSpec(f"{prefix}-0{number}", kind, seed=7)  # type: ignore[arg-type]
            write_machine(influx, spec, drifting)
    rules = load_rules(DEFAULT_RULES)
    result = replay(influx, rules, START, END)

    report = []
    for prefix in kinds:
        machine = f"{prefix}-01"
        first = first_condition_alert(result.alerts, machine)
        assert first is not None and first.started_at is not None, f"{machine}: never warned"
        rise = RATE * (first.started_at - ONSET).total_seconds()
        report.append(f"{machine}: {first.rule} at {first.started_at:%a %H:%M}, drift {rise:+.0%}")
        assert first.started_at < AT_35, f"{machine}: warned at {rise:+.0%}, later than +35 %"
        # What caught it compares with a reference that did not learn the drift.
        rule = rules.get(first.rule)
        assert getattr(rule, "reference", None) == "commissioning", first.rule
    print("\n" + "\n".join(report))
    healthy = [
        (a.machine, a.rule)
        for a in result.alerts
        if a.machine.endswith("-02") and a.rule_kind in ("threshold", "anomaly")
    ]
    assert healthy == []
