"""The alert lifecycle's data: alerts, their transitions, and the evaluator's memory.

An alert is one incident of one rule on one machine. Its lifecycle state goes
``pending → firing → resolved``; acknowledgement is independent of it (an alert can
be firing-unacked, firing-acked, resolved-unacked or resolved-acked). Every change is
a ``Transition``; the list of transitions is the alert's full history and what the
delivery channels (MQTT, InfluxDB, webhook) send.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from analytics.alerts.rules import Severity
from wire import MachineRef, from_epoch_ms, to_epoch_ms

AlertState = Literal["pending", "firing", "resolved"]
TransitionKind = Literal["firing", "escalated", "renotified", "acked", "resolved"]
TRANSITION_KINDS: tuple[TransitionKind, ...] = (
    "firing",
    "escalated",
    "renotified",
    "acked",
    "resolved",
)


def alert_id(rule: str, machine: str, since: datetime) -> str:
    """A deterministic id: the same data replayed gives the same ids."""
    key = f"{rule}|{machine}|{to_epoch_ms(since)}"
    return hashlib.sha256(key.encode()).hexdigest()[:10]


@dataclass(frozen=True)
class Alert:
    """One incident of ``rule`` on ``machine``."""

    id: str
    rule: str
    rule_kind: str
    machine: str
    site: str
    line: str
    severity: Severity
    state: AlertState
    pending_since: datetime  # when the condition first held
    started_at: datetime | None = None  # when it fired
    resolved_at: datetime | None = None
    value: float | None = None  # the value that fired it
    last_value: float | None = None  # the latest value seen while active
    summary: str = ""
    acked_at: datetime | None = None
    acked_by: str | None = None
    ack_note: str | None = None
    resolved_by: str | None = None  # None: the condition cleared; else the operator
    notified_at: datetime | None = None
    # Rules with a `forecast`: where the value is heading, as of the latest step seen.
    forecast: str = ""  # "at this rate zone D (4.5) in about 26 h"
    limit_eta: datetime | None = None  # when it reaches the limit at that rate
    time_to_limit_h: float | None = None  # hours from that step to limit_eta

    @property
    def ref(self) -> MachineRef:
        return MachineRef(self.site, self.line, self.machine)

    @property
    def active(self) -> bool:
        return self.state in ("pending", "firing")

    @property
    def acked(self) -> bool:
        return self.acked_at is not None

    def to_json(self) -> dict[str, Any]:
        """The JSON form used by the HTTP API, webhooks and MQTT (times as RFC 3339)."""
        out: dict[str, Any] = {}
        for name in self.__dataclass_fields__:
            value = getattr(self, name)
            out[name] = (
                value.isoformat().replace("+00:00", "Z") if isinstance(value, datetime) else value
            )
        out["acked"] = self.acked
        return out

    def summary_json(self) -> dict[str, Any]:
        """The short form of ``runhours alerts evaluate --format json``."""
        full = self.to_json()
        return {
            k: full[k]
            for k in ("id", "rule", "machine", "severity", "started_at", "resolved_at", "value")
        }


@dataclass(frozen=True)
class Transition:
    """One change of one alert, at ``at``; ``alert`` is the alert after the change."""

    kind: TransitionKind
    at: datetime
    alert: Alert
    by: str | None = None
    note: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "event": self.kind,
            "at": self.at.isoformat().replace("+00:00", "Z"),
            "by": self.by,
            "note": self.note,
            "alert": self.alert.to_json(),
        }


@dataclass
class Tracker:
    """What the evaluator remembers about one (rule, machine) between steps."""

    alert: Alert | None = None  # the pending or firing alert, if any
    memory: dict[str, Any] = field(default_factory=dict)  # the condition's own state

    def to_json(self) -> dict[str, Any]:
        return {"alert": alert_to_row(self.alert) if self.alert else None, "memory": self.memory}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Tracker:
        alert = alert_from_row(data["alert"]) if data.get("alert") else None
        return cls(alert=alert, memory=dict(data.get("memory") or {}))


TrackerKey = tuple[str, str]  # (rule id, machine id)


@dataclass
class EngineState:
    """The evaluator's whole memory: one tracker per (rule, machine), and how far it got.

    Two clocks: ``until`` is how far the no-data rules have walked in wall-clock time
    (silence is what they report), ``cursors`` how far each machine's data-time rules
    (threshold, anomaly, service interval) have walked; they advance only as far as that
    machine's data has arrived, so late data is evaluated in order when it lands.
    """

    trackers: dict[TrackerKey, Tracker] = field(default_factory=dict)
    until: datetime | None = None
    cursors: dict[str, datetime] = field(default_factory=dict)  # machine → data-time rules' end

    def active_alerts(self) -> list[Alert]:
        return [t.alert for t in self.trackers.values() if t.alert and t.alert.state == "firing"]


_TIME_FIELDS = (
    "pending_since",
    "started_at",
    "resolved_at",
    "acked_at",
    "notified_at",
    "limit_eta",
)


def alert_to_row(alert: Alert) -> dict[str, Any]:
    """An alert as a flat dict with epoch-ms times (SQLite rows, tracker JSON)."""
    row = dict(alert.__dict__)
    for name in _TIME_FIELDS:
        value = row[name]
        row[name] = to_epoch_ms(value) if value is not None else None
    return row


def alert_from_row(row: dict[str, Any]) -> Alert:
    data = {k: row[k] for k in Alert.__dataclass_fields__ if k in row}
    for name in _TIME_FIELDS:
        if data.get(name) is not None:
            data[name] = from_epoch_ms(int(data[name]))
    return Alert(**data)


__all__ = [
    "TRANSITION_KINDS",
    "Alert",
    "AlertState",
    "EngineState",
    "Tracker",
    "TrackerKey",
    "Transition",
    "TransitionKind",
    "alert_from_row",
    "alert_id",
    "alert_to_row",
]
