"""The evaluator's memory in the alert file, and the commit of one evaluation cycle.

``trackers`` (per rule and machine), ``machine_cursors`` (how far each machine's data-time
rules have been evaluated) and ``meta`` (``until`` for the no-data rules, ``origin`` where
the service began). A cycle's alerts, history and memory are committed in one transaction,
so a crash at any point leaves either the old or the new state.
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import replace
from datetime import datetime

from analytics.alerts.history import append_transition, insert_alert, read_alert
from analytics.alerts.model import EngineState, Tracker, Transition, alert_to_row
from analytics.alerts.schema import FORECAST_COLUMNS, AlertFile
from wire import from_epoch_ms, to_epoch_ms

# Columns the evaluator owns; acknowledgement columns belong to operators.
_ENGINE_COLUMNS = (
    "severity",
    "state",
    "resolved_at",
    "value",
    "last_value",
    "summary",
    "notified_at",
    *FORECAST_COLUMNS,
)


class EngineStateStore(AlertFile):
    """Load and save ``EngineState`` (see the module docstring)."""

    def load_state(self) -> EngineState:
        """The evaluator's memory, reconciled with operator actions since it was saved.

        An alert an operator resolved drops out of its tracker (the condition must hold
        again to raise a new one); acknowledgements are copied in (no re-notification).
        """
        with self._file.connect() as db:
            trackers = db.execute("SELECT rule, machine, body FROM trackers").fetchall()
            firing = db.execute("SELECT * FROM alerts WHERE state = 'firing'").fetchall()
            until = db.execute("SELECT value FROM meta WHERE key = 'until'").fetchone()
            cursors = db.execute("SELECT machine, until FROM machine_cursors").fetchall()
        alerts = {r["id"]: read_alert(r) for r in firing}
        state = EngineState(
            until=from_epoch_ms(int(until["value"])) if until else None,
            cursors={r["machine"]: from_epoch_ms(int(r["until"])) for r in cursors},
        )
        for row in trackers:
            tracker = Tracker.from_json(json.loads(row["body"]))
            alert = tracker.alert
            if alert is not None and alert.state == "firing":
                stored = alerts.get(alert.id)
                if stored is None:  # an operator resolved it
                    tracker.alert = None
                else:
                    tracker.alert = replace(
                        alert,
                        acked_at=stored.acked_at,
                        acked_by=stored.acked_by,
                        ack_note=stored.ack_note,
                    )
            state.trackers[(row["rule"], row["machine"])] = tracker
        return state

    def cursors(self) -> dict[str, datetime]:
        """Per machine, how far its data-time rules have been evaluated (data time)."""
        with self._file.connect() as db:
            rows = db.execute("SELECT machine, until FROM machine_cursors").fetchall()
        return {r["machine"]: from_epoch_ms(int(r["until"])) for r in rows}

    def meta(self, key: str) -> str | None:
        with self._file.connect() as db:
            row = db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row["value"])

    # -- the evaluator's commit ----------------------------------------------------

    def commit(
        self, state: EngineState, transitions: list[Transition], meta: dict[str, str] | None = None
    ) -> list[Transition]:
        """Save one evaluation cycle atomically; return the transitions actually applied.

        A transition on an alert an operator resolved meanwhile is dropped (and that
        tracker let go), so the evaluator never overrides an operator.
        """
        applied: list[Transition] = []
        with self._file.write() as db:
            dropped: set[str] = set()
            for transition in transitions:
                alert = transition.alert
                if alert.id in dropped:
                    continue
                if transition.kind == "firing":
                    try:
                        insert_alert(db, alert)
                    except sqlite3.IntegrityError:
                        dropped.add(alert.id)  # already there: never raise the same alert twice
                        continue
                else:
                    sets = ", ".join(f"{c} = ?" for c in _ENGINE_COLUMNS)
                    row = alert_to_row(alert)
                    cursor = db.execute(
                        f"UPDATE alerts SET {sets} WHERE id = ? AND state = 'firing'",
                        (*(row[c] for c in _ENGINE_COLUMNS), alert.id),
                    )
                    if cursor.rowcount == 0:
                        dropped.add(alert.id)
                        continue
                stored = read_alert(
                    db.execute("SELECT * FROM alerts WHERE id = ?", (alert.id,)).fetchone()
                )
                applied.append(append_transition(db, replace(transition, alert=stored)))
            db.execute("DELETE FROM trackers")
            for (rule, machine), tracker in sorted(state.trackers.items()):
                if tracker.alert is not None and tracker.alert.id in dropped:
                    tracker = Tracker(None, tracker.memory)
                if tracker.alert is not None and tracker.alert.state == "firing":
                    row = alert_to_row(tracker.alert)
                    db.execute(
                        "UPDATE alerts SET last_value = ?, forecast = ?, limit_eta = ?, "
                        "time_to_limit_h = ? WHERE id = ? AND state = 'firing'",
                        (
                            row["last_value"],
                            row["forecast"],
                            row["limit_eta"],
                            row["time_to_limit_h"],
                            tracker.alert.id,
                        ),
                    )
                db.execute(
                    "INSERT INTO trackers (rule, machine, body) VALUES (?, ?, ?)",
                    (rule, machine, json.dumps(tracker.to_json(), separators=(",", ":"))),
                )
            db.executemany(
                "INSERT OR REPLACE INTO machine_cursors (machine, until) VALUES (?, ?)",
                [(m, to_epoch_ms(c)) for m, c in sorted(state.cursors.items())],
            )
            values = dict(meta or {})
            if state.until is not None:
                values["until"] = str(to_epoch_ms(state.until))
            for key, value in values.items():
                db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (key, value))
        return applied
