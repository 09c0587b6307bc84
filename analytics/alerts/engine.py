"""Evaluation: a pure function of (rules, data window, previous state) → transitions.

``evaluate`` walks the window's fixed step grid (``rules.step`` of data time,
epoch-aligned) for every (rule, machine) pair. The same rules and data and the same
previous state always give the same transitions, so a replay over history
(``runhours alerts evaluate``) and the live service (which applies it to each fresh
window, carrying the state over) agree.

Each pair walks only its own span of the window: no-data rules the steps after
``state.until`` (wall-clock time), data-time rules (threshold, anomaly, service
interval) the steps after the machine's cursor up to its ``reach`` (how far its data
has arrived). A replay passes no ``reach`` and starts from an empty state: every pair
walks the whole window.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from analytics.alerts.conditions import bind
from analytics.alerts.lifecycle import advance
from analytics.alerts.model import EngineState, Tracker, Transition
from analytics.alerts.rules import NoDataRule, RuleSet
from analytics.alerts.window import DataWindow
from wire import from_epoch_ms, to_epoch_ms


@dataclass
class Evaluation:
    """What one evaluation produced: the new state and the transitions, in time order."""

    state: EngineState
    transitions: list[Transition] = field(default_factory=list)


def evaluate(
    rules: RuleSet,
    window: DataWindow,
    state: EngineState | None = None,
    *,
    reach: Mapping[str, datetime] | None = None,
) -> Evaluation:
    """Evaluate ``rules`` over ``window``, continuing from ``state`` (not modified).

    ``reach``: per machine, the step end up to which its data is complete; data-time
    rules of a machine stop there, and machines missing from it are not advanced. None
    (a replay): every machine's data is complete up to the window's end.
    """
    if window.step != rules.step:
        raise ValueError(f"window step {window.step} differs from the rules' step {rules.step}")
    new = copy.deepcopy(state) if state is not None else EngineState()
    step_ms = int(rules.step / timedelta(milliseconds=1))
    start_ms, end_ms = to_epoch_ms(window.start), to_epoch_ms(window.end)
    steps = window.steps()
    silence_from = max(start_ms, to_epoch_ms(new.until) if new.until else start_ms)
    order = {rule.id: index for index, rule in enumerate(rules.rule)}
    out: list[tuple[int, int, str, int, Transition]] = []
    for machine in sorted(window.machines):
        data = window.machines[machine]
        kind = data.kind if data.kind is not None else rules.kind_of(machine)
        cursor = new.cursors.get(machine)
        data_from = max(start_ms, to_epoch_ms(cursor) if cursor else start_ms)
        if reach is None:
            data_to = end_ms
        else:
            data_to = min(end_ms, to_epoch_ms(reach[machine])) if machine in reach else start_ms
        for rule in rules.rule:
            if not rule.selects(machine, kind):
                continue
            lo, hi = (
                (silence_from, end_ms) if isinstance(rule, NoDataRule) else (data_from, data_to)
            )
            if hi <= lo:
                continue
            tracker = new.trackers.setdefault((rule.id, machine), Tracker())
            condition = bind(rule, data, step_ms / 1000, start_ms)
            renotify = rules.renotify_for(rule)
            for t in steps[_index(steps, lo + step_ms) : _index(steps, hi + step_ms)]:
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
        if data_to > data_from:
            new.cursors[machine] = from_epoch_ms(data_to)
    new.until = window.end
    out.sort(key=lambda item: item[:4])
    return Evaluation(new, [item[4] for item in out])


def _index(steps: range, t: int) -> int:
    """Position of step end ``t`` in ``steps`` (clamped to the range)."""
    return max(0, min(len(steps), (t - steps.start) // steps.step))
