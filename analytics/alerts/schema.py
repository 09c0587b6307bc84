"""The alert store's SQLite file (``<data_dir>/alerts.sqlite3``): its tables and migrations.

- ``alerts``: one row per alert that fired (a partial unique index allows only one
  active alert per (rule, machine));
- ``transitions``: the full history, one row per change, in commit order; it is also the
  delivery outbox, with a cursor per channel in ``cursors``;
- ``trackers``, ``machine_cursors`` and ``meta``: the evaluator's memory and how far it
  has evaluated.

``AlertFile`` opens the file (creating or migrating it); the store's parts
(``history``, ``engine_state``, ``outbox``) read and write it through its connections.
"""

from __future__ import annotations

from pathlib import Path

from analytics.alerts.model import Alert
from analytics.sqlite import SqliteFile

STORE_FILE = "alerts.sqlite3"

SCHEMA = """
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
FORECAST_COLUMNS = {
    "forecast": "TEXT NOT NULL DEFAULT ''",
    "limit_eta": "INTEGER",
    "time_to_limit_h": "REAL",
}


ALERT_COLUMNS = tuple(Alert.__dataclass_fields__)


class AlertFile:
    """The open alert file; every operation takes its own connection from ``_file``."""

    def __init__(self, path: Path) -> None:
        self._file = SqliteFile(path, SCHEMA, synchronous="NORMAL")
        self.path = self._file.path
        self._migrate()

    def _migrate(self) -> None:
        """Bring an older file up to ``SCHEMA_VERSION`` (idempotent, one transaction)."""
        with self._file.connect() as db:
            if int(db.execute("PRAGMA user_version").fetchone()[0]) >= SCHEMA_VERSION:
                return
        with self._file.write() as db:
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
                for name, definition in FORECAST_COLUMNS.items():
                    if name not in have:
                        db.execute(f"ALTER TABLE alerts ADD COLUMN {name} {definition}")
            if version < SCHEMA_VERSION:
                db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
