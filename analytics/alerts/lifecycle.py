"""The alert state machine: verdicts in, transitions out (pure).

- no alert: a triggering verdict opens a *pending* alert (``pending_since`` = start of
  the step); with ``for = 0`` it fires at once.
- pending: fires once the condition has held for ``for``; a step where it does not
  hold (in the deadband or clear) drops the pending alert without a trace; a step
  without data keeps it pending.
- firing: resolves only once the verdict has been *clear* (past the deadband) for
  ``clear_for`` (a step without data neither counts nor breaks it); while unacknowledged
  it is re-notified every ``renotify``; a severity change (a service that went from
  due-soon to due) is an ``escalated`` transition.

Acknowledgement and manual resolution are operator actions (``store.py``), not here.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

from analytics.alerts.conditions import Verdict
from analytics.alerts.model import Alert, Tracker, Transition, alert_id
from analytics.alerts.rules import Rule
from wire import MachineRef, from_epoch_ms

_MS = timedelta(milliseconds=1)
_HOUR_MS = 3_600_000
_CLEAR_SINCE = "_clear_since"  # tracker memory: since when a firing alert's condition is clear


def _forecast(verdict: Verdict, t: int) -> dict[str, Any]:
    """The alert's forecast fields from one step's verdict."""
    eta = verdict.eta
    return {
        "forecast": verdict.forecast,
        "limit_eta": None if eta is None else from_epoch_ms(eta),
        "time_to_limit_h": None if eta is None else round((eta - t) / _HOUR_MS, 1),
    }


def advance(
    tracker: Tracker,
    verdict: Verdict,
    t: int,
    *,
    rule: Rule,
    ref: MachineRef,
    step_ms: int,
    renotify: timedelta,
) -> list[Transition]:
    """Apply one step's verdict at step end ``t`` (epoch ms); mutate ``tracker``."""
    alert = tracker.alert
    if alert is None and not verdict.trigger:
        return []  # the common case, first: nothing to do
    now = from_epoch_ms(t)
    if alert is None:
        alert = _opened(tracker, verdict, t, rule=rule, ref=ref, step_ms=step_ms)
        tracker.alert = alert
    elif verdict.value is not None:
        alert = replace(alert, last_value=verdict.value, **_forecast(verdict, t))
        tracker.alert = alert
    if alert.state == "pending":
        return _pending(tracker, alert, verdict, rule, now)
    return _firing(tracker, alert, verdict, t, step_ms=step_ms, rule=rule, renotify=renotify)


def _opened(
    tracker: Tracker, verdict: Verdict, t: int, *, rule: Rule, ref: MachineRef, step_ms: int
) -> Alert:
    """A pending alert for a triggering verdict, pending since the start of the step."""
    # A clearing timer belongs to one alert; one left by an alert an operator
    # resolved must not shorten this alert's `clear_for`.
    tracker.memory.pop(_CLEAR_SINCE, None)
    since = from_epoch_ms(t - step_ms)
    return Alert(
        id=alert_id(rule.id, ref.machine, since),
        rule=rule.id,
        rule_kind=rule.kind,
        machine=ref.machine,
        site=ref.site,
        line=ref.line,
        severity=verdict.severity or rule.severity,
        state="pending",
        pending_since=since,
        value=verdict.value,
        last_value=verdict.value,
        summary=verdict.summary,
        **_forecast(verdict, t),
    )


def _pending(
    tracker: Tracker, alert: Alert, verdict: Verdict, rule: Rule, now: datetime
) -> list[Transition]:
    """A pending alert fires once its condition has held for ``for``, or is dropped."""
    if not verdict.trigger:
        if verdict.value is not None or verdict.clear:
            tracker.alert = None  # the condition did not hold for `for`: no alert
        return []
    hold = getattr(rule, "for_", timedelta(0))
    if now - alert.pending_since < hold:
        return []
    alert = replace(
        alert,
        state="firing",
        started_at=now,
        severity=verdict.severity or rule.severity,
        value=verdict.value,
        summary=verdict.summary,
        notified_at=now,
    )
    tracker.alert = alert
    return [Transition("firing", now, alert)]


def _firing(
    tracker: Tracker,
    alert: Alert,
    verdict: Verdict,
    t: int,
    *,
    step_ms: int,
    rule: Rule,
    renotify: timedelta,
) -> list[Transition]:
    """A firing alert resolves once the clear condition has held for ``clear_for``;
    else it may escalate or be re-notified."""
    now = from_epoch_ms(t)
    if verdict.clear:
        clear_since = tracker.memory.setdefault(_CLEAR_SINCE, t - step_ms)
        if t - clear_since >= getattr(rule, "clear_for", timedelta(0)) / _MS:
            del tracker.memory[_CLEAR_SINCE]
            alert = replace(alert, state="resolved", resolved_at=now)
            tracker.alert = None
            return [Transition("resolved", now, alert)]
    elif verdict.value is not None or verdict.trigger:
        tracker.memory.pop(_CLEAR_SINCE, None)
    out: list[Transition] = []
    if verdict.trigger and verdict.severity is not None and verdict.severity != alert.severity:
        alert = replace(alert, severity=verdict.severity, summary=verdict.summary, notified_at=now)
        out.append(Transition("escalated", now, alert))
    elif (
        not alert.acked
        and renotify > timedelta(0)
        and alert.notified_at is not None
        and now - alert.notified_at >= renotify
    ):
        alert = replace(alert, notified_at=now)
        out.append(Transition("renotified", now, alert))
    tracker.alert = alert
    return out
