"""Backtests: how early and how truly rules would have warned, on data with known failures.

A backtest replays stored data through the rules (the same ``evaluate`` as ``runhours
alerts evaluate`` and the live service) and scores each threshold and anomaly rule
against the failures known to have happened:

- a rule's **lead time** for a failure is how long before it the rule's first alert on
  that machine fired, counting only alerts that fired after the wear began (the
  ground truth's ``onset``; without one, up to ``horizon`` before the failure);
- a failure the rule watches but did not warn of is **missed**;
- every other alert is a **false alarm**, except those that fired while the machine was
  failed or being repaired (up to ``after`` past the failure, or its end of repair),
  counted per 100 machine-days of data.

The row ``(any rule)`` scores the rule set as a whole: the earliest alert of any rule,
and all rules' false alarms. Several runs (seeds of a simulated fleet, plants,
periods) add up into one scoreboard.

>>> board = score([run], rules)                                        # doctest: +SKIP
>>> board.rule("(any rule)").median_lead                              # doctest: +SKIP
"""

from __future__ import annotations

import csv
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from analytics.alerts.engine import evaluate
from analytics.alerts.model import Alert
from analytics.alerts.replay import collect_alerts
from analytics.alerts.rules import CONDITION_KINDS, RuleSet
from analytics.alerts.source import WindowSource
from analytics.alerts.window import DataWindow, grid_span
from common.errors import RunhoursError
from common.times import parse_time
from store import InfluxClient

ANY = "(any rule)"
DEFAULT_HORIZON = timedelta(days=7)
DEFAULT_AFTER = timedelta(days=1)


class FailuresError(RunhoursError, ValueError):
    """A failures file cannot be read; the message names the line and column."""


@dataclass(frozen=True)
class Failure:
    """A known failure of ``machine`` at ``at``."""

    machine: str
    at: datetime
    onset: datetime | None = None  # when the wear began: earlier alerts are false alarms
    repaired: datetime | None = None  # back in service: alerts until then are the failure's
    profile: str = ""  # how it wore (the simulator's degradation profile), for the record


@dataclass(frozen=True)
class Run:
    """One replay to score: its alerts, its known failures and its machine-days of data."""

    name: str
    alerts: Sequence[Alert]
    failures: Sequence[Failure]
    machine_days: dict[str, float]  # per machine: days with data (steps with samples)


@dataclass(frozen=True)
class Warning:
    """One rule's warning (or its absence) of one failure."""

    run: str
    failure: Failure
    alert: Alert | None  # the first alert that warned of it; None: missed

    @property
    def lead(self) -> timedelta | None:
        if self.alert is None or self.alert.started_at is None:
            return None
        return self.failure.at - self.alert.started_at


@dataclass
class RuleScore:
    """One rule's (or the whole set's) score over all runs."""

    rule: str
    warnings: list[Warning] = field(default_factory=list)
    false_alarms: list[tuple[str, Alert]] = field(default_factory=list)  # (run, alert)
    machine_days: float = 0.0

    @property
    def leads(self) -> list[timedelta]:
        return sorted(w.lead for w in self.warnings if w.lead is not None)

    @property
    def missed(self) -> int:
        return sum(1 for w in self.warnings if w.lead is None)

    @property
    def median_lead(self) -> timedelta | None:
        leads = self.leads
        if not leads:
            return None
        middle = len(leads) // 2
        return leads[middle] if len(leads) % 2 else (leads[middle - 1] + leads[middle]) / 2

    @property
    def min_lead(self) -> timedelta | None:
        return self.leads[0] if self.leads else None

    @property
    def false_alarm_rate(self) -> float | None:
        """False alarms per 100 machine-days."""
        if self.machine_days <= 0:
            return None
        return 100 * len(self.false_alarms) / self.machine_days

    def to_json(self) -> dict[str, Any]:
        def hours(delta: timedelta | None) -> float | None:
            return None if delta is None else round(delta / timedelta(hours=1), 2)

        rate = self.false_alarm_rate
        return {
            "rule": self.rule,
            "failures": len(self.warnings),
            "warned": len(self.warnings) - self.missed,
            "missed": self.missed,
            "median_lead_h": hours(self.median_lead),
            "min_lead_h": hours(self.min_lead),
            "false_alarms": len(self.false_alarms),
            "machine_days": round(self.machine_days, 3),
            "false_alarms_per_100_machine_days": None if rate is None else round(rate, 3),
            "warnings": [
                {
                    "run": w.run,
                    "machine": w.failure.machine,
                    "failure_at": _iso(w.failure.at),
                    "profile": w.failure.profile,
                    "alert_at": _iso(w.alert.started_at) if w.alert else None,
                    "lead_h": hours(w.lead),
                }
                for w in self.warnings
            ],
            "false_alarm_alerts": [
                {"run": run, "machine": a.machine, "at": _iso(a.started_at), "summary": a.summary}
                for run, a in self.false_alarms
            ],
        }


@dataclass
class Scoreboard:
    """Every scored rule (in file order), then ``(any rule)``."""

    rules: list[RuleScore]
    runs: int
    horizon: timedelta
    after: timedelta

    def rule(self, rule_id: str) -> RuleScore:
        return next(r for r in self.rules if r.rule == rule_id)

    def to_json(self) -> dict[str, Any]:
        return {
            "runs": self.runs,
            "horizon_h": self.horizon / timedelta(hours=1),
            "after_h": self.after / timedelta(hours=1),
            "rules": [r.to_json() for r in self.rules],
        }


def _iso(ts: datetime | None) -> str | None:
    return None if ts is None else ts.isoformat().replace("+00:00", "Z")


def score(
    runs: Iterable[Run],
    rules: RuleSet,
    *,
    horizon: timedelta = DEFAULT_HORIZON,
    after: timedelta = DEFAULT_AFTER,
) -> Scoreboard:
    """Score the threshold and anomaly rules of ``rules`` over ``runs``."""
    scored = [r for r in rules.rule if r.kind in CONDITION_KINDS]
    board = {r.id: RuleScore(r.id) for r in scored}
    board[ANY] = RuleScore(ANY)
    count = 0
    for run in runs:
        count += 1
        selected = {
            r.id: {m for m in run.machine_days if r.selects(m, rules.kind_of(m))} for r in scored
        }
        selected[ANY] = set().union(*selected.values()) if selected else set()
        for rule_id, machines in selected.items():
            board[rule_id].machine_days += sum(run.machine_days[m] for m in machines)
        first: dict[tuple[str, int], Alert] = {}  # (rule, failure index) → first warning
        for alert in run.alerts:
            if alert.rule not in board or alert.started_at is None:
                continue
            index, warns = _attribute(alert, run.failures, horizon, after)
            if index is None:
                board[alert.rule].false_alarms.append((run.name, alert))
                board[ANY].false_alarms.append((run.name, alert))
            elif warns:
                for key in ((alert.rule, index), (ANY, index)):
                    best = first.get(key)
                    if best is None or _started(alert) < _started(best):
                        first[key] = alert
        for index, failure in enumerate(run.failures):
            for rule_id, machines in selected.items():
                if failure.machine in machines:
                    warning = Warning(run.name, failure, first.get((rule_id, index)))
                    board[rule_id].warnings.append(warning)
    return Scoreboard(list(board.values()), count, horizon, after)


def _started(alert: Alert) -> datetime:
    assert alert.started_at is not None
    return alert.started_at


def _attribute(
    alert: Alert, failures: Sequence[Failure], horizon: timedelta, after: timedelta
) -> tuple[int | None, bool]:
    """Which failure an alert belongs to (None: a false alarm), and whether it warned of it."""
    at = _started(alert)
    for index, failure in enumerate(failures):
        if failure.machine != alert.machine:
            continue
        begins = failure.onset if failure.onset is not None else failure.at - horizon
        ends = max(failure.at + after, failure.repaired or failure.at)
        if begins <= at < failure.at:
            return index, True
        if failure.at <= at < ends:
            return index, False
    return None, False


def machine_days(window: DataWindow) -> dict[str, float]:
    """Per machine, the days of data in ``window`` (steps with any sample × step)."""
    step_days = window.step / timedelta(days=1)
    return {m: len(data.seen) * step_days for m, data in window.machines.items()}


def replay_window(rules: RuleSet, window: DataWindow) -> list[Alert]:
    """Every alert ``rules`` raise over ``window`` from a cold start (latest snapshots)."""
    result = evaluate(rules, window)
    final = {a.id: a for a in result.state.active_alerts()}
    return [final.get(a.id, a) for a in collect_alerts(result.transitions)]


def backtest(
    client: InfluxClient,
    rules: RuleSet,
    start: datetime,
    end: datetime,
    failures: Sequence[Failure],
    *,
    horizon: timedelta = DEFAULT_HORIZON,
    after: timedelta = DEFAULT_AFTER,
) -> Scoreboard:
    """Replay stored telemetry in ``[start, end)`` through the threshold and anomaly rules
    and score them against ``failures``."""
    conditions = rules.conditions_only()
    lo, hi = grid_span(start, end, rules.step, "backtest")
    window = WindowSource(client, conditions).load(lo, hi)
    run = Run("", replay_window(conditions, window), failures, machine_days(window))
    return score([run], conditions, horizon=horizon, after=after)


def read_failures_csv(path: Path) -> list[Failure]:
    """A failures file: CSV with a header ``machine,failed_at`` (and optionally ``onset``).

    Times are RFC 3339 with a zone; rows are failures in any order.
    """
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise FailuresError(f"{path}: cannot read the failures file: {exc.strerror}") from None
    rows = list(csv.reader(text.splitlines()))
    if not rows:
        raise FailuresError(f"{path}: empty (expected a header: machine,failed_at[,onset])")
    header = [h.strip() for h in rows[0]]
    if header[:2] != ["machine", "failed_at"] or not set(header[2:]) <= {"onset"}:
        raise FailuresError(
            f"{path}:1: the header must be machine,failed_at[,onset], got {','.join(header)!r}"
        )
    out: list[Failure] = []
    for line, row in enumerate(rows[1:], start=2):
        if not any(cell.strip() for cell in row):
            continue
        if len(row) != len(header):
            raise FailuresError(f"{path}:{line}: {len(row)} cells, the header has {len(header)}")
        cells = dict(zip(header, (c.strip() for c in row), strict=True))
        try:
            at = parse_time(cells["failed_at"], f"{path}:{line}: failed_at")
            onset = cells.get("onset")
            begun = parse_time(onset, f"{path}:{line}: onset") if onset else None
        except ValueError as exc:
            raise FailuresError(str(exc)) from None
        if not cells["machine"]:
            raise FailuresError(f"{path}:{line}: machine is empty")
        if begun is not None and begun >= at:
            raise FailuresError(f"{path}:{line}: onset must be before failed_at")
        out.append(Failure(cells["machine"], at, begun))
    return sorted(out, key=lambda f: (f.at, f.machine))
