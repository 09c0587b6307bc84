"""Pure evaluators: what each rule kind says about one machine at one step.

Each evaluator turns one step's observation (and its own memory, a JSON-able dict
carried between steps and across restarts) into a ``Verdict``: whether the firing
condition holds (``trigger``), whether the clearing condition holds (``clear``; the two
differ by the deadband), or neither. The lifecycle (``lifecycle.py``) decides what a
verdict means for the alert.
"""

from __future__ import annotations

import math
from bisect import bisect_right
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from analytics.alerts import drift
from analytics.alerts.rules import (
    AnomalyRule,
    Forecast,
    NoDataRule,
    Rule,
    ServiceIntervalRule,
    Severity,
    ThresholdRule,
)
from analytics.alerts.window import MachineData, ServiceData

Memory = dict[str, Any]


@dataclass(frozen=True)
class Verdict:
    """One step's reading of a rule: fire, clear, or (neither) hold."""

    trigger: bool
    clear: bool
    value: float | None = None
    severity: Severity | None = None  # overrides the rule's severity when set
    summary: str = ""
    # Where the value is heading (rules with a `forecast`, while firing or about to):
    eta: int | None = None  # when it reaches the limit at the recent rate (epoch ms)
    forecast: str = ""  # "at this rate zone D (4.5) in about 26 h"


UNKNOWN = Verdict(trigger=False, clear=False)  # no data this step: hold what we have


class Condition(Protocol):
    """A rule bound to one machine's data."""

    def __call__(self, t: int, memory: Memory, active: bool) -> Verdict: ...


def _fmt(value: float) -> str:
    return f"{value:.3g}"


class _Observations:
    """Step observations of one value, filtered by machine state (carried forward)."""

    def __init__(self, data: MachineData, value: str, states: Sequence[str] | None) -> None:
        self.data = data
        self.values = data.values.get(value, {})
        self.states = data.states
        self.allowed = frozenset(states) if states is not None else None
        self.state_before: str | None = None
        self.cold = True
        self.state: str | None = None  # the state in effect at the latest step read

    def at(self, t: int, memory: Memory) -> float | None:
        if self.allowed is None:
            return self.values.get(t)
        if self.cold:
            # The first step walked may lie inside the window (a machine's cursor): the
            # state before it is the window's latest state before that step.
            self.cold = False
            self.state_before = self.data.state_before_step(t)
        state = self.states.get(t)
        if state is None:
            state = memory.get("state", self.state_before)
        else:
            memory["state"] = state
        self.state = state
        if state not in self.allowed:
            return None
        return self.values.get(t)


class _Forecaster:
    """A rule's ``forecast``: hourly means of what it watches, and the trend line's ETA."""

    def __init__(self, forecast: Forecast | None, up: bool) -> None:
        self.forecast = forecast
        self.up = up
        self.keep_ms = int(forecast.over.total_seconds() * 1000) if forecast else 0

    def observe(self, t: int, value: float, memory: Memory) -> None:
        if self.forecast is not None:
            drift.record(memory.setdefault("trend", []), t, value, self.keep_ms)

    def verdict(self, verdict: Verdict, t: int, memory: Memory, active: bool) -> Verdict:
        """``verdict`` with the forecast added (only when it fires or is active: it costs)."""
        forecast = self.forecast
        if forecast is None or not (active or verdict.trigger):
            return verdict
        fit = drift.trend(memory.get("trend", []), t)
        if fit is None:
            return verdict
        hours = drift.hours_to(forecast.limit, fit[0], fit[1], self.up)
        if hours is None:
            return verdict
        name = forecast.name()
        text = (
            f"{name} reached"
            if hours == 0
            else f"at this rate {name} in {drift.describe_hours(hours)}"
        )
        return Verdict(
            verdict.trigger,
            verdict.clear,
            verdict.value,
            verdict.severity,
            f"{verdict.summary}; {text}" if verdict.summary else text,
            eta=t + round(hours * drift.HOUR_MS),
            forecast=text,
        )


class ThresholdCondition:
    def __init__(self, rule: ThresholdRule, data: MachineData) -> None:
        self.rule = rule
        self.obs = _Observations(data, rule.value, rule.states)
        self.forecaster = _Forecaster(rule.forecast, up=rule.above is not None)

    def __call__(self, t: int, memory: Memory, active: bool) -> Verdict:
        v = self.obs.at(t, memory)
        if v is None:
            return UNKNOWN
        rule = self.rule
        self.forecaster.observe(t, v, memory)
        if rule.above is not None:
            trigger = v > rule.above
            clear = v < (rule.clear_below if rule.clear_below is not None else rule.above)
        else:
            assert rule.below is not None
            trigger = v < rule.below
            clear = v > (rule.clear_above if rule.clear_above is not None else rule.below)
        if not (trigger or active):
            return Verdict(trigger, clear, v)  # no alert to describe: skip the text
        limit = rule.above if rule.above is not None else rule.below
        assert limit is not None
        sign = ">" if rule.above is not None else "<"
        summary = f"{rule.value} {_fmt(v)} {sign} {_fmt(limit)}"
        return self.forecaster.verdict(
            Verdict(trigger, clear, v, summary=summary), t, memory, active
        )


def ewma_alpha(step_s: float, half_life_s: float) -> float:
    """Weight of a new observation for an EWMA with the given half-life."""
    return float(1.0 - 0.5 ** (step_s / half_life_s))


class AnomalyCondition:
    """EWMA control chart: a fast EWMA (current level) against a slow one (baseline).

    The baseline mean and variance are learnt from the machine's own data (a plain
    average during warm-up, then an EWMA with the ``baseline`` half-life whose steps
    are clipped to 3 std) and frozen while an alert is pending or firing, so a slow
    fault is not learnt as normal.
    """

    def __init__(self, rule: AnomalyRule, data: MachineData, step_s: float) -> None:
        self.rule = rule
        self.obs = _Observations(data, rule.value, rule.states)
        self.a_slow = ewma_alpha(step_s, rule.baseline.total_seconds())
        self.a_fast = ewma_alpha(step_s, rule.window.total_seconds())
        self.warm_steps = rule.warmup.total_seconds() / step_s
        self.forecaster = _Forecaster(rule.forecast, up=rule.direction != "down")

    def __call__(self, t: int, memory: Memory, active: bool) -> Verdict:
        v = self.obs.at(t, memory)
        if v is None:
            return UNKNOWN
        self.forecaster.observe(t, v, memory)
        return self.forecaster.verdict(self._verdict(v, memory, active), t, memory, active)

    def _verdict(self, v: float, memory: Memory, active: bool) -> Verdict:
        rule = self.rule
        n = int(memory.get("n", 0))
        if n == 0:
            memory.update(n=1, mean=v, var=0.0, fast=v)
            return Verdict(False, True, v)
        mean, var = float(memory["mean"]), float(memory["var"])
        fast = float(memory["fast"]) + self.a_fast * (v - float(memory["fast"]))
        memory["fast"] = fast
        std = max(math.sqrt(var), rule.min_std)
        z = (fast - mean) / std
        deviation = {"up": z, "down": -z, "both": abs(z)}[rule.direction]
        warm = n >= self.warm_steps
        if not active:
            # A plain average during warm-up, then the slow EWMA; once warm, a step moves
            # the baseline by at most 3 std (outliers and slow wear are not learnt whole).
            a = 1.0 / (n + 1) if not warm else self.a_slow
            delta = v - mean if not warm else max(-3 * std, min(3 * std, v - mean))
            memory.update(n=n + 1, mean=mean + a * delta, var=(1 - a) * (var + a * delta * delta))
        trigger, clear = warm and deviation > rule.sigma, deviation < rule.clear_sigma
        if not (trigger or active):
            return Verdict(trigger, clear, fast)  # no alert to describe: skip the text
        summary = (
            f"{rule.value} level {_fmt(fast)} vs baseline {_fmt(mean)} ± {_fmt(std)} ({z:+.1f}σ)"
        )
        return Verdict(trigger, clear, fast, summary=summary)


class ReferenceCondition:
    """Deviation from a commissioning reference: learnt once, then frozen until a service.

    After the machine's first data (installation) or a maintenance record of the rule's
    ``maintenance_kind``, the first ``commissioning`` of observations (steps in the rule's
    states) is learnt: mean and std per state, and per load band if the rule has
    ``bands``. Then the reference is frozen; wear can no longer be learnt as normal. Each
    later step's deviation is its relative distance from the reference of its own state
    and band (``(v - mean) / mean``), or in std for the ``ewma`` detector with ``sigma``.
    While a reference is being learnt the verdict is *clear*: a service resolves what
    the old reference saw.
    """

    def __init__(self, rule: AnomalyRule, data: MachineData, step_s: float) -> None:
        self.rule = rule
        self.obs = _Observations(data, rule.value, rule.states)
        self.loads = data.values.get(rule.bands.value, {}) if rule.bands else {}
        self.records = data.records.get(rule.maintenance_kind, ())
        self.step_h = step_s / 3600
        self.step_ms = round(step_s * 1000)
        self.learn_steps = max(1, round(rule.commissioning.total_seconds() / step_s))
        self.min_steps = max(10, round(0.05 * self.learn_steps))  # to trust one band
        self.a_level = ewma_alpha(step_s, rule.window.total_seconds())
        self.forecaster = _Forecaster(rule.forecast, up=rule.direction != "down")

    def _since(self, t: int) -> int | None:
        """The latest maintenance record before the samples of the step ending at ``t``."""
        i = bisect_right(self.records, t - self.step_ms)
        return self.records[i - 1] if i else None

    def __call__(self, t: int, memory: Memory, active: bool) -> Verdict:
        since = self._since(t)
        if since is not None and since != memory.get("since"):
            # Serviced: learn a new reference (the deviation state goes with the old one).
            for key in ("ref", "learnt", "level", "cusum", "trend"):
                memory.pop(key, None)
            memory["since"] = since
        v = self.obs.at(t, memory)
        if v is None:
            return UNKNOWN
        key = str(self.obs.state)
        if self.rule.bands is not None:
            load = self.loads.get(t)
            if load is None:
                return UNKNOWN
            key = f"{key} band {self.rule.bands.band(load)}"
        self.forecaster.observe(t, v, memory)
        refs: dict[str, drift.Stats] = memory.setdefault("ref", {})
        learnt = int(memory.get("learnt", 0))
        if learnt < self.learn_steps:
            refs[key] = drift.learn(refs.get(key), v)
            memory["learnt"] = learnt + 1
            share = (learnt + 1) / self.learn_steps
            return Verdict(False, True, v, summary=f"learning the reference ({share:.0%})")
        stats = refs.get(key)
        if stats is None or stats[0] < self.min_steps:
            return UNKNOWN  # a state or band the commissioning did not see enough of
        trigger, clear, says = self._detect(v, stats, memory)
        if not (trigger or active):
            return Verdict(trigger, clear, v)  # no alert to describe: skip the text
        summary = f"{self.rule.value} {_fmt(v)} vs reference {_fmt(stats[1])} ({key}): {says}"
        return self.forecaster.verdict(
            Verdict(trigger, clear, v, summary=summary), t, memory, active
        )

    def _detect(self, v: float, stats: drift.Stats, memory: Memory) -> tuple[bool, bool, str]:
        """Trigger, clear, and what the detector says (for the alert's text)."""
        rule = self.rule
        mean = stats[1]
        if rule.detector == "ewma" and rule.rise is None:
            share = (v - mean) / max(drift.std(stats), rule.min_std)  # in std, not a share
        else:
            share = (v - mean) / max(abs(mean), rule.min_std)
        deviation = {"up": share, "down": -share, "both": abs(share)}[rule.direction]
        if rule.detector == "cusum":
            s = drift.cusum(float(memory.get("cusum", 0.0)), deviation, rule.k, rule.h, self.step_h)
            memory["cusum"] = s
            return s >= rule.h, s <= 0.0, f"{share:+.0%}, CUSUM {s:.2f} of {rule.h:g}"
        level = float(memory.get("level", 0.0))
        level += self.a_level * (deviation - level)
        memory["level"] = level
        if rule.rise is not None:
            clear = rule.clear_rise if rule.clear_rise is not None else rule.rise / 2
            return level > rule.rise, level < clear, f"level {level:+.0%} (limit {rule.rise:+.0%})"
        return level > rule.sigma, level < rule.clear_sigma, f"level {level:+.1f}σ"


class ServiceIntervalCondition:
    """Run-hours since the last maintenance record of the rule's kind."""

    def __init__(self, rule: ServiceIntervalRule, data: MachineData, window_start: int) -> None:
        self.rule = rule
        self.service: ServiceData | None = data.service.get(rule.maintenance_kind)
        self.window_start = window_start

    def hours_at(self, t: int) -> float | None:
        s = self.service
        if s is None:
            return None
        last = max((r for r in s.records if r <= t), default=None)
        if last is None:
            return (s.run_before + s.running.seconds(self.window_start, t)) / 3600
        return s.running.seconds(last, t) / 3600

    def __call__(self, t: int, memory: Memory, active: bool) -> Verdict:
        hours = self.hours_at(t)
        if hours is None:
            return UNKNOWN
        rule = self.rule
        warn_at = rule.hours * rule.warn_fraction
        due = hours >= rule.hours
        severity = rule.severity if due else rule.warn_severity
        word = "due" if due else "due soon"
        summary = f"service {word}: {hours:.1f} of {_fmt(rule.hours)} run-hours since the last {rule.maintenance_kind}"
        return Verdict(hours >= warn_at, hours < warn_at, round(hours, 4), severity, summary)


class NoDataCondition:
    """Silence (no telemetry for ``silent_for``) or an offline status (retained or the will)."""

    def __init__(self, rule: NoDataRule, data: MachineData, step_s: float) -> None:
        self.rule = rule
        self.data = data
        self.step_ms = round(step_s * 1000)
        self.silent_ms = int(rule.silent_for.total_seconds() * 1000)
        self.offline_ms = int(rule.offline_for.total_seconds() * 1000)

    def __call__(self, t: int, memory: Memory, active: bool) -> Verdict:
        data = self.data
        if "seen" not in memory:
            # Cold start: the loader's view of the time before this step.
            memory["seen"] = data.last_seen_before_step(t)
            if data.status_before is not None:
                memory["status"] = list(data.status_before)
        # Late arrivals: telemetry or a status stored after the steps they belong to were
        # evaluated appear only as "before this window"; newer than what was known, they
        # count (otherwise an ingest slower than the settle time hides every sample).
        late = data.last_seen_before
        if late is not None and late < t and (memory["seen"] is None or late > memory["seen"]):
            memory["seen"] = late
        before = data.status_before
        if before is not None and (memory.get("status") is None or before[0] > memory["status"][0]):
            memory["status"] = list(before)
        if t in data.seen:
            memory["seen"] = t
        for ts, online in data.status:
            if ts < t and (memory.get("status") is None or ts >= memory["status"][0]):
                memory["status"] = [ts, online]
        seen = memory.get("seen")
        status = memory.get("status")
        if seen is None and status is None:
            return UNKNOWN
        silent_ms = t - seen if seen is not None else None
        # Telemetry in a step that began after an offline status proves the agent is back,
        # even when its own "online" status reached the database after that step had been
        # evaluated (a late status is not read again: the alert would stay while data flows).
        back = seen is not None and status is not None and seen - self.step_ms > status[0]
        offline = status is not None and not status[1] and not back
        silent = silent_ms is not None and silent_ms > self.silent_ms
        if seen is None:
            silent = True
        offline_long = offline and status is not None and t - status[0] >= self.offline_ms
        value = silent_ms / 1000 if silent_ms is not None else None
        if offline_long:
            summary = "agent offline (status/will)"
        elif silent and silent_ms is not None:
            summary = f"no telemetry for {silent_ms // 1000} s"
        else:
            summary = "no telemetry"
        return Verdict(silent or offline_long, not silent and not offline, value, summary=summary)


def bind(rule: Rule, data: MachineData, step_s: float, window_start: int) -> Condition:
    """The evaluator of ``rule`` for one machine's data."""
    if isinstance(rule, ThresholdRule):
        return ThresholdCondition(rule, data)
    if isinstance(rule, AnomalyRule):
        if rule.reference == "commissioning":
            return ReferenceCondition(rule, data, step_s)
        return AnomalyCondition(rule, data, step_s)
    if isinstance(rule, ServiceIntervalRule):
        return ServiceIntervalCondition(rule, data, window_start)
    return NoDataCondition(rule, data, step_s)
