"""Evaluation: a pure function of (rules, data window, previous state) → transitions.

``evaluate`` walks the window's fixed step grid (``rules.step`` of data time,
epoch-aligned) for every (rule, machine) pair. The same rules and data and the same
previous state always give the same transitions, so a replay over history
(``runhours alerts evaluate``) and the live service (which applies it to each fresh
window, carrying the state over) agree.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from datetime import timedelta

from analytics.alerts.conditions import bind
from analytics.alerts.lifecycle import advance
from analytics.alerts.model import EngineState, Tracker, Transition
from analytics.alerts.rules import RuleSet
from analytics.alerts.window import DataWindow
from contract import to_epoch_ms


@dataclass
class Evaluation:
    """What one evaluation produced: the new state and the transitions, in time order."""

    state: EngineState
    transitions: list[Transition] = field(default_factory=list)


def evaluate(rules: RuleSet, window: DataWindow, state: EngineState | None = None) -> Evaluation:
    """Evaluate ``rules`` over ``window``, continuing from ``state`` (not modified)."""
    if window.step != rules.step:
        raise ValueError(f"window step {window.step} differs from the rules' step {rules.step}")
    new = copy.deepcopy(state) if state is not None else EngineState()
    step_ms = int(rules.step / timedelta(milliseconds=1))
    start_ms = to_epoch_ms(window.start)
    steps = window.steps()
    order = {rule.id: index for index, rule in enumerate(rules.rule)}
    out: list[tuple[int, int, str, int, Transition]] = []
    for machine in sorted(window.machines):
        data = window.machines[machine]
        kind = data.kind if data.kind is not None else rules.kind_of(machine)
        for rule in rules.rule:
            if not rule.selects(machine, kind):
                continue
            tracker = new.trackers.setdefault((rule.id, machine), Tracker())
            condition = bind(rule, data, step_ms / 1000, start_ms)
            renotify = rules.renotify_for(rule)
            for t in steps:
                active = tracker.alert is not None
                verdict = condition(t, tracker.memory, active)
                for n, transition in enumerate(
                    advance(
                        tracker,
                        verdict,
                        t,
                        rule=rule,
                        ref=data.ref,
                        step_ms=step_ms,
                        renotify=renotify,
                    )
                ):
                    out.append((t, order[rule.id], machine, n, transition))
            if tracker.alert is None and not tracker.memory:
                del new.trackers[(rule.id, machine)]
    new.until = window.end
    out.sort(key=lambda item: item[:4])
    return Evaluation(new, [item[4] for item in out])
