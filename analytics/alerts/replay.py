"""Replays: evaluate rules over a stretch of history, deterministically.

``replay`` reads the window from InfluxDB and runs the same ``evaluate`` the live
service runs, from an empty state. Same data and rules → the same alerts, ids included.
Anomaly baselines start cold: give a replay enough data before the interesting part
(``warmup`` of each anomaly rule).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from analytics.alerts.engine import evaluate
from analytics.alerts.model import Alert, Transition
from analytics.alerts.rules import CONDITION_KINDS, RuleSet, load_rules
from analytics.alerts.source import WindowSource
from analytics.alerts.window import grid_span
from store import InfluxClient


@dataclass(frozen=True)
class Replay:
    """A replay's outcome: every alert that fired (latest snapshot), and all transitions."""

    start: datetime
    end: datetime
    alerts: list[Alert]
    transitions: list[Transition]


def collect_alerts(transitions: list[Transition]) -> list[Alert]:
    """The latest snapshot of every alert in ``transitions``, by start time then rule."""
    latest: dict[str, Alert] = {}
    for transition in transitions:
        latest[transition.alert.id] = transition.alert
    return sorted(
        latest.values(), key=lambda a: (a.started_at or a.pending_since, a.rule, a.machine)
    )


def replay(client: InfluxClient, rules: RuleSet, start: datetime, end: datetime) -> Replay:
    """Evaluate ``rules`` over ``[start, end)`` (widened to the step grid) from scratch."""
    lo, hi = grid_span(start, end, rules.step, "replay")
    window = WindowSource(client, rules).load(lo, hi)
    result = evaluate(rules, window)
    # Alerts still firing at the end: their latest snapshot (last value) from the state.
    final = {a.id: a for a in result.state.active_alerts()}
    alerts = [final.get(a.id, a) for a in collect_alerts(result.transitions)]
    return Replay(lo, hi, alerts, result.transitions)


def first_condition_alert(alerts: list[Alert], machine: str) -> Alert | None:
    """The earliest threshold or anomaly alert of ``machine`` (the early warning)."""
    found = [
        a
        for a in alerts
        if a.machine == machine and a.rule_kind in CONDITION_KINDS and a.started_at
    ]
    return min(found, key=lambda a: a.started_at or a.pending_since, default=None)


def lead_time(alerts: list[Alert], machine: str, failure_at: datetime) -> timedelta | None:
    """How long before ``failure_at`` the first condition alert of ``machine`` fired."""
    first = first_condition_alert(alerts, machine)
    if first is None or first.started_at is None or first.started_at > failure_at:
        return None
    return failure_at - first.started_at


def demo_alerts(
    client: InfluxClient, rules_file: Path, start: datetime, end: datetime
) -> list[Alert]:
    """The alerts a simulated stretch raised (the demo prints them)."""
    return replay(client, load_rules(rules_file), start, end).alerts
