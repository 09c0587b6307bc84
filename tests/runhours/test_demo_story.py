"""The live demo's story, at any hour: the alert it announces comes minutes after the first
phase, on a machine that keeps running until then (its rush order), and the rest of the
plant is left as it was. Pure simulation; ``test_demo_live`` runs the story for real."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from analytics.alerts.rules import ThresholdRule, load_rules
from analytics.plant import DEFAULT_PLANT, load_plant
from runhours.demo import (
    EXAMPLES,
    FIRST_PHASE_PACE,
    LIVE_LEAD,
    SAMPLE_INTERVAL_S,
    SUMMARY,
    days_back,
    first_alert,
    with_live_wear,
)
from runhours.fleet import follow_plant
from simulators import MachineSim, fleet


# Hours at which the former timing (the machine's first calm spell) put the alert 13-19 min
# out: a six-machine story has to wait for no idle spell now.
@pytest.mark.parametrize(
    "now",
    [
        datetime(2026, 11, 30, 7, 50, tzinfo=UTC),
        datetime(2026, 11, 30, 16, 27, tzinfo=UTC),
        datetime(2026, 12, 1, 4, 59, tzinfo=UTC),
    ],
    ids=["morning", "afternoon", "night"],
)
def test_the_live_alert_comes_minutes_after_the_first_phase_at_any_hour(now: datetime) -> None:
    rules = load_rules(EXAMPLES / "rules.toml")
    start = days_back(now, 6)
    plain = follow_plant(fleet(6, seed=1, start=start, site="plant1"), load_plant(DEFAULT_PLANT))
    specs, story = with_live_wear(plain, start, now, rules)
    assert story is not None
    live = next(s for s in specs if s.machine == story.machine)
    # The first phase (6 machines, 6 days) and the summary, then the lead.
    first_phase = timedelta(seconds=len(specs) * 6 * 8640 / FIRST_PHASE_PACE)
    due = now + first_phase + SUMMARY + LIVE_LEAD
    assert due <= story.alert_expected < due + timedelta(minutes=3)
    assert story.alert_expected + timedelta(minutes=3) < story.failure_at
    # Only the live machine changed; it runs without a break from now to its alert.
    assert [s for s in specs if s is not live] == [s for s in plain if s.machine != live.machine]
    sim = MachineSim(live, start, sample_interval_s=SAMPLE_INTERVAL_S)
    t = now
    while t < story.alert_expected:
        assert sim.state_at(t) == "running", t
        t += timedelta(seconds=10)
    # The alert is the rule's own verdict on that machine's simulated data.
    rule = next(r for r in rules.rule if r.id == story.rule)
    assert isinstance(rule, ThresholdRule)
    assert first_alert(live, start, story.failure_at, rules, rule) == story.alert_expected
