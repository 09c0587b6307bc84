"""Alert state in SQLite under the data directory: alerts, history, evaluator memory, outbox.

One file (``<data_dir>/alerts.sqlite3``, WAL mode) holds everything an analytics
restart needs, so a restart never repeats or forgets an alert:

- ``alerts``: one row per alert that fired (a partial unique index allows only one
  active alert per (rule, machine));
- ``transitions``: the full history, one row per change, in commit order. It is also
  the delivery outbox: every channel (MQTT, InfluxDB, webhook) has a cursor in
  ``cursors`` and delivers the rows after it in order;
- ``trackers``, ``machine_cursors`` and ``meta``: the evaluator's memory and how far it
  has evaluated: ``meta.until`` for the no-data rules (wall-clock time),
  ``machine_cursors`` per machine for its data-time rules (as far as its data arrived),
  ``meta.origin`` where the service began (the cursor of a machine not seen before).

An evaluation cycle is committed in one transaction (alerts, history, memory and the
new ``until`` together), so a crash at any point leaves either the old or the new
state. Operators (CLI, HTTP API) write through the same file; every operation opens
its own connection, so the store is safe to share between threads and processes.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from analytics.alerts.model import (
    Alert,
    EngineState,
    Tracker,
    Transition,
    alert_from_row,
    alert_to_row,
)
from common.errors import RunhoursError
from wire import from_epoch_ms, to_epoch_ms

STORE_FILE = "alerts.sqlite3"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS alerts (
    id TEXT PRIMARY KEY,
    rule TEXT NOT NULL,
    rule_kind TEXT NOT NULL,
    machine TEXT NOT NULL,
    site TEXT NOT NULL,
    line TEXT NOT NULL,
    severity TEXT NOT NULL,
    state TEXT NOT NULL,
    pending_since INTEGER NOT NULL,
    started_at INTEGER,
    resolved_at INTEGER,
    value REAL,
    last_value REAL,
    summary TEXT NOT NULL DEFAULT '',
    acked_at INTEGER,
    acked_by TEXT,
    ack_note TEXT,
    resolved_by TEXT,
    notified_at INTEGER,
    forecast TEXT NOT NULL DEFAULT '',
    limit_eta INTEGER,
    time_to_limit_h REAL
);
CREATE UNIQUE INDEX IF NOT EXISTS alerts_one_active ON alerts (rule, machine)
    WHERE state IN ('pending', 'firing');
CREATE INDEX IF NOT EXISTS alerts_machine ON alerts (machine, started_at);
CREATE TABLE IF NOT EXISTS transitions (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    alert_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    at INTEGER NOT NULL,
    body TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS transitions_alert ON transitions (alert_id, seq);
CREATE TABLE IF NOT EXISTS trackers (
    rule TEXT NOT NULL,
    machine TEXT NOT NULL,
    body TEXT NOT NULL,
    PRIMARY KEY (rule, machine)
);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS machine_cursors (machine TEXT PRIMARY KEY, until INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS cursors (
    channel TEXT PRIMARY KEY,
    seq INTEGER NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    last_error TEXT
);
"""

# user_version 1 (implicit 0): one global `until`; 2: per-machine cursors and `origin`;
# 3: the forecast columns of alerts.
SCHEMA_VERSION = 3
_FORECAST_COLUMNS = {
    "forecast": "TEXT NOT NULL DEFAULT ''",
    "limit_eta": "INTEGER",
    "time_to_limit_h": "REAL",
}

_ALERT_COLUMNS = tuple(Alert.__dataclass_fields__)
# Columns the evaluator owns; acknowledgement columns belong to operators.
_ENGINE_COLUMNS = (
    "severity",
    "state",
    "resolved_at",
    "value",
    "last_value",
    "summary",
    "notified_at",
    *_FORECAST_COLUMNS,
)


class AlertError(RunhoursError, ValueError):
    """An operator action that cannot be done (unknown id, already resolved, …)."""


class AlertNotFound(AlertError):
    """No alert has this id."""


@dataclass(frozen=True)
class Delivery:
    """One history row waiting for a channel: its sequence number and JSON body."""

    seq: int
    body: dict[str, Any]


def _now() -> datetime:
    return from_epoch_ms(to_epoch_ms(datetime.now(UTC)))


class AlertStore:
    """The SQLite file of one analytics service (see the module docstring)."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._connect() as db:
            db.execute("PRAGMA journal_mode=WAL")
            db.executescript(_SCHEMA)
        self._migrate()

    def _migrate(self) -> None:
        """Bring an older file up to ``SCHEMA_VERSION`` (idempotent, one transaction)."""
        with self._connect() as db:
            if int(db.execute("PRAGMA user_version").fetchone()[0]) >= SCHEMA_VERSION:
                return
        with self._write() as db:
            version = int(db.execute("PRAGMA user_version").fetchone()[0])
            if version < 2:
                # Before per-machine cursors every rule had walked up to the one global
                # `until`: that is where each machine's data-time rules continue.
                db.execute(
                    "INSERT OR IGNORE INTO meta (key, value) "
                    "SELECT 'origin', value FROM meta WHERE key = 'until'"
                )
            if version < 3:
                # A file created before has no forecast columns (a new file already has them).
                have = {row["name"] for row in db.execute("PRAGMA table_info(alerts)")}
                for name, definition in _FORECAST_COLUMNS.items():
                    if name not in have:
                        db.execute(f"ALTER TABLE alerts ADD COLUMN {name} {definition}")
            if version < SCHEMA_VERSION:
                db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")

    @classmethod
    def in_data_dir(cls, data_dir: Path) -> AlertStore:
        return cls(Path(data_dir) / STORE_FILE)

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        db = sqlite3.connect(self.path, timeout=30, isolation_level=None)
        db.row_factory = sqlite3.Row
        try:
            db.execute("PRAGMA busy_timeout=30000")
            db.execute("PRAGMA synchronous=NORMAL")
            yield db
        finally:
            db.close()

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """A write transaction (BEGIN IMMEDIATE: one writer at a time, no lost updates)."""
        with self._connect() as db:
            db.execute("BEGIN IMMEDIATE")
            try:
                yield db
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")

    # -- reading -------------------------------------------------------------------

    @staticmethod
    def _alert(row: sqlite3.Row) -> Alert:
        return alert_from_row(dict(row))

    def get(self, alert_id: str) -> Alert:
        with self._connect() as db:
            row = db.execute("SELECT * FROM alerts WHERE id = ?", (alert_id,)).fetchone()
        if row is None:
            raise AlertNotFound(f"no alert with id {alert_id!r} (see `runhours alerts list`)")
        return self._alert(row)

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
        with self._connect() as db:
            rows = db.execute(
                f"SELECT * FROM alerts {where} ORDER BY started_at DESC, rule, machine LIMIT ?",
                (*args, limit),
            ).fetchall()
        return [self._alert(r) for r in rows]

    def history(self, alert_id: str | None = None) -> list[dict[str, Any]]:
        """Transitions (as their JSON bodies) in commit order, of one alert or all."""
        with self._connect() as db:
            if alert_id is None:
                rows = db.execute("SELECT body FROM transitions ORDER BY seq").fetchall()
            else:
                rows = db.execute(
                    "SELECT body FROM transitions WHERE alert_id = ? ORDER BY seq", (alert_id,)
                ).fetchall()
        return [json.loads(r["body"]) for r in rows]

    def load_state(self) -> EngineState:
        """The evaluator's memory, reconciled with operator actions since it was saved.

        An alert an operator resolved drops out of its tracker (the condition must hold
        again to raise a new one); acknowledgements are copied in (no re-notification).
        """
        with self._connect() as db:
            trackers = db.execute("SELECT rule, machine, body FROM trackers").fetchall()
            firing = db.execute("SELECT * FROM alerts WHERE state = 'firing'").fetchall()
            until = db.execute("SELECT value FROM meta WHERE key = 'until'").fetchone()
            cursors = db.execute("SELECT machine, until FROM machine_cursors").fetchall()
        alerts = {r["id"]: self._alert(r) for r in firing}
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
        with self._connect() as db:
            rows = db.execute("SELECT machine, until FROM machine_cursors").fetchall()
        return {r["machine"]: from_epoch_ms(int(r["until"])) for r in rows}

    def meta(self, key: str) -> str | None:
        with self._connect() as db:
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
        with self._write() as db:
            dropped: set[str] = set()
            for transition in transitions:
                alert = transition.alert
                if alert.id in dropped:
                    continue
                if transition.kind == "firing":
                    try:
                        self._insert(db, alert)
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
                stored = self._alert(
                    db.execute("SELECT * FROM alerts WHERE id = ?", (alert.id,)).fetchone()
                )
                applied.append(self._append(db, replace(transition, alert=stored)))
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

    @staticmethod
    def _insert(db: sqlite3.Connection, alert: Alert) -> None:
        row = alert_to_row(alert)
        db.execute(
            f"INSERT INTO alerts ({', '.join(_ALERT_COLUMNS)}) VALUES ({', '.join('?' for _ in _ALERT_COLUMNS)})",
            tuple(row[c] for c in _ALERT_COLUMNS),
        )

    @staticmethod
    def _append(db: sqlite3.Connection, transition: Transition) -> Transition:
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

    def record(self, transitions: list[Transition]) -> None:
        """Insert alerts and history as they are, without the evaluator (imports, tests)."""
        with self._write() as db:
            for transition in transitions:
                if transition.kind == "firing":
                    self._insert(db, transition.alert)
                self._append(db, transition)

    # -- operators -------------------------------------------------------------------

    def ack(
        self, alert_id: str, by: str, note: str | None = None, at: datetime | None = None
    ) -> Alert:
        """Acknowledge an alert (firing or resolved): stops re-notification, keeps its state."""
        if not by.strip():
            raise AlertError("by: say who acknowledges (a name or initials)")
        when = at or _now()
        with self._write() as db:
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
            self._append(db, Transition("acked", when, alert, by=by, note=note))
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
        with self._write() as db:
            alert = self._row(db, alert_id)
            if alert.state == "resolved":
                raise AlertError(f"alert {alert_id} is already resolved")
            db.execute(
                "UPDATE alerts SET state = 'resolved', resolved_at = ?, resolved_by = ? WHERE id = ?",
                (to_epoch_ms(when), by, alert_id),
            )
            alert = self._row(db, alert_id)
            self._append(db, Transition("resolved", when, alert, by=by, note=note))
        return alert

    def _row(self, db: sqlite3.Connection, alert_id: str) -> Alert:
        row = db.execute("SELECT * FROM alerts WHERE id = ?", (alert_id,)).fetchone()
        if row is None:
            raise AlertNotFound(f"no alert with id {alert_id!r} (see `runhours alerts list`)")
        return self._alert(row)

    # -- the outbox --------------------------------------------------------------------

    def open_channel(self, channel: str, from_start: bool = False) -> int:
        """Make sure ``channel`` has a cursor; a new one starts after the current history
        (or at its beginning with ``from_start``). Returns the cursor."""
        with self._write() as db:
            row = db.execute("SELECT seq FROM cursors WHERE channel = ?", (channel,)).fetchone()
            if row is not None:
                return int(row["seq"])
            top = (
                0
                if from_start
                else int(db.execute("SELECT coalesce(max(seq), 0) FROM transitions").fetchone()[0])
            )
            db.execute("INSERT INTO cursors (channel, seq) VALUES (?, ?)", (channel, top))
            return top

    def undelivered(self, channel: str, limit: int = 100) -> list[Delivery]:
        with self._connect() as db:
            rows = db.execute(
                "SELECT seq, body FROM transitions WHERE seq > (SELECT seq FROM cursors WHERE channel = ?) "
                "ORDER BY seq LIMIT ?",
                (channel, limit),
            ).fetchall()
        return [Delivery(int(r["seq"]), json.loads(r["body"])) for r in rows]

    def delivered(self, channel: str, seq: int) -> None:
        with self._write() as db:
            db.execute(
                "UPDATE cursors SET seq = max(seq, ?), attempts = 0, last_error = NULL WHERE channel = ?",
                (seq, channel),
            )

    def failed(self, channel: str, error: str) -> int:
        """Count a failed attempt; returns the attempts so far for the head row."""
        with self._write() as db:
            db.execute(
                "UPDATE cursors SET attempts = attempts + 1, last_error = ? WHERE channel = ?",
                (error[:500], channel),
            )
            row = db.execute(
                "SELECT attempts FROM cursors WHERE channel = ?", (channel,)
            ).fetchone()
        return int(row["attempts"])

    def backlog(self) -> dict[str, int]:
        """Undelivered history rows per channel."""
        with self._connect() as db:
            rows = db.execute(
                "SELECT c.channel, (SELECT count(*) FROM transitions t WHERE t.seq > c.seq) AS n FROM cursors c"
            ).fetchall()
        return {r["channel"]: int(r["n"]) for r in rows}


def wait_for(predicate: Any, timeout: float, interval: float = 0.05) -> bool:
    """Poll ``predicate`` until true or ``timeout`` seconds pass (for tests and shutdown)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return bool(predicate())
