"""Alerts and their history in the alert file: reading them, operator actions, recording.

An operator's acknowledgement or resolve is one write transaction: the alert row and its
history row together.
"""

from __future__ import annotations

import json
import sqlite3
from datetime import UTC, datetime
from typing import Any

from analytics.alerts.model import Alert, Transition, alert_from_row, alert_to_row
from analytics.alerts.schema import ALERT_COLUMNS, AlertFile
from common.errors import RunhoursError
from wire import from_epoch_ms, to_epoch_ms


class AlertError(RunhoursError, ValueError):
    """An operator action that cannot be done (unknown id, already resolved, …)."""


class AlertNotFound(AlertError):
    """No alert has this id."""


def _now() -> datetime:
    return from_epoch_ms(to_epoch_ms(datetime.now(UTC)))


def read_alert(row: sqlite3.Row) -> Alert:
    return alert_from_row(dict(row))


def insert_alert(db: sqlite3.Connection, alert: Alert) -> None:
    row = alert_to_row(alert)
    db.execute(
        f"INSERT INTO alerts ({', '.join(ALERT_COLUMNS)}) VALUES ({', '.join('?' for _ in ALERT_COLUMNS)})",
        tuple(row[c] for c in ALERT_COLUMNS),
    )


def append_transition(db: sqlite3.Connection, transition: Transition) -> Transition:
    db.execute(
        "INSERT INTO transitions (alert_id, kind, at, body) VALUES (?, ?, ?, ?)",
        (
            transition.alert.id,
            transition.kind,
            to_epoch_ms(transition.at),
            json.dumps(transition.to_json(), separators=(",", ":")),
        ),
    )
    return transition


class AlertHistory(AlertFile):
    """Alerts and transitions: what the CLI, the console and the evaluator read."""

    def get(self, alert_id: str) -> Alert:
        with self._file.connect() as db:
            row = db.execute("SELECT * FROM alerts WHERE id = ?", (alert_id,)).fetchone()
        if row is None:
            raise AlertNotFound(f"no alert with id {alert_id!r} (see `runhours alerts list`)")
        return read_alert(row)

    def alerts(
        self, active: bool | None = None, machine: str | None = None, limit: int = 1000
    ) -> list[Alert]:
        """Alerts, newest first; ``active=True``: firing only, ``False``: resolved only."""
        clauses, args = [], []
        if active is True:
            clauses.append("state IN ('pending', 'firing')")
        elif active is False:
            clauses.append("state = 'resolved'")
        if machine:
            clauses.append("machine = ?")
            args.append(machine)
        where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
        with self._file.connect() as db:
            rows = db.execute(
                f"SELECT * FROM alerts {where} ORDER BY started_at DESC, rule, machine LIMIT ?",
                (*args, limit),
            ).fetchall()
        return [read_alert(r) for r in rows]

    def history(self, alert_id: str | None = None) -> list[dict[str, Any]]:
        """Transitions (as their JSON bodies) in commit order, of one alert or all."""
        with self._file.connect() as db:
            if alert_id is None:
                rows = db.execute("SELECT body FROM transitions ORDER BY seq").fetchall()
            else:
                rows = db.execute(
                    "SELECT body FROM transitions WHERE alert_id = ? ORDER BY seq", (alert_id,)
                ).fetchall()
        return [json.loads(r["body"]) for r in rows]

    def record(self, transitions: list[Transition]) -> None:
        """Insert alerts and history as they are, without the evaluator (imports, tests)."""
        with self._file.write() as db:
            for transition in transitions:
                if transition.kind == "firing":
                    insert_alert(db, transition.alert)
                append_transition(db, transition)

    # -- operators -------------------------------------------------------------------

    def ack(
        self, alert_id: str, by: str, note: str | None = None, at: datetime | None = None
    ) -> Alert:
        """Acknowledge an alert (firing or resolved): stops re-notification, keeps its state."""
        if not by.strip():
            raise AlertError("by: say who acknowledges (a name or initials)")
        when = at or _now()
        with self._file.write() as db:
            alert = self._row(db, alert_id)
            if alert.acked:
                raise AlertError(
                    f"alert {alert_id} was already acknowledged by {alert.acked_by} at "
                    f"{alert.acked_at.isoformat() if alert.acked_at else '?'}"
                )
            db.execute(
                "UPDATE alerts SET acked_at = ?, acked_by = ?, ack_note = ? WHERE id = ?",
                (to_epoch_ms(when), by, note, alert_id),
            )
            alert = self._row(db, alert_id)
            append_transition(db, Transition("acked", when, alert, by=by, note=note))
        return alert

    def resolve(
        self,
        alert_id: str,
        by: str = "operator",
        note: str | None = None,
        at: datetime | None = None,
    ) -> Alert:
        """Resolve a firing alert by hand; the condition must hold anew to raise another."""
        if not by.strip():
            raise AlertError("by: say who resolves (a name or initials)")
        when = at or _now()
        with self._file.write() as db:
            alert = self._row(db, alert_id)
            if alert.state == "resolved":
                raise AlertError(f"alert {alert_id} is already resolved")
            db.execute(
                "UPDATE alerts SET state = 'resolved', resolved_at = ?, resolved_by = ? WHERE id = ?",
                (to_epoch_ms(when), by, alert_id),
            )
            alert = self._row(db, alert_id)
            append_transition(db, Transition("resolved", when, alert, by=by, note=note))
        return alert

    def _row(self, db: sqlite3.Connection, alert_id: str) -> Alert:
        row = db.execute("SELECT * FROM alerts WHERE id = ?", (alert_id,)).fetchone()
        if row is None:
            raise AlertNotFound(f"no alert with id {alert_id!r} (see `runhours alerts list`)")
        return read_alert(row)
