"""The ledger of issued statements (SQLite under the data directory).

``runhours billing export --finalize`` records every line it issues here, exactly as
exported (decimal strings). A later export of the same contract and period reproduces
those lines and appends adjustments for what changed; finalizing that export records
the adjustments as the next revision. Nothing is ever updated or deleted.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

from analytics.billing.statements import LINE_KINDS, Line, LineKind, Statement
from common.errors import RunhoursError

LEDGER_FILE = Path("billing") / "ledger.sqlite3"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS revision (
    contract_id  TEXT NOT NULL,
    period_start TEXT NOT NULL,
    period_end   TEXT NOT NULL,
    revision     INTEGER NOT NULL,
    issued_at    TEXT NOT NULL,
    currency     TEXT NOT NULL,
    total        TEXT NOT NULL,
    PRIMARY KEY (contract_id, period_start, period_end, revision)
);
CREATE TABLE IF NOT EXISTS line (
    contract_id    TEXT NOT NULL,
    period_start   TEXT NOT NULL,
    period_end     TEXT NOT NULL,
    revision       INTEGER NOT NULL,
    seq            INTEGER NOT NULL,
    id             TEXT NOT NULL,
    kind           TEXT NOT NULL,
    machine        TEXT NOT NULL,
    metered_hours  TEXT NOT NULL,
    billable_hours TEXT NOT NULL,
    rate           TEXT NOT NULL,
    amount         TEXT NOT NULL,
    coverage       TEXT NOT NULL,
    method         TEXT NOT NULL,
    key            TEXT NOT NULL,
    gaps           INTEGER NOT NULL DEFAULT 0,
    counter_anomalies TEXT NOT NULL DEFAULT '[]',
    PRIMARY KEY (contract_id, period_start, period_end, revision, seq)
);
"""
# Columns added since the first ledger format, with their defaults for lines issued before.
_ADDED_COLUMNS = {
    "gaps": "INTEGER NOT NULL DEFAULT 0",
    "counter_anomalies": "TEXT NOT NULL DEFAULT '[]'",
}


class LedgerError(RunhoursError, RuntimeError):
    """The ledger could not be read or written; the message names the file."""


@dataclass(frozen=True)
class Revision:
    """One finalization of a contract's period."""

    contract_id: str
    period_start: str
    period_end: str
    revision: int
    issued_at: str
    currency: str
    total: Decimal
    lines: int

    def row(self) -> tuple[str, str, str, int, str, str, str]:
        """Its row in the ``revision`` table (the total an exact decimal string)."""
        return (
            self.contract_id,
            self.period_start,
            self.period_end,
            self.revision,
            self.issued_at,
            self.currency,
            format(self.total, "f"),
        )


def default_ledger(data_dir: Path) -> Path:
    return data_dir / LEDGER_FILE


def _add_missing_columns(connection: sqlite3.Connection) -> None:
    """Bring a ledger written by an older runhours up to the current line columns."""
    present = {row[1] for row in connection.execute("PRAGMA table_info(line)")}
    for name, definition in _ADDED_COLUMNS.items():
        if name not in present:
            connection.execute(f"ALTER TABLE line ADD COLUMN {name} {definition}")


def _kind(text: str) -> LineKind:
    for kind in LINE_KINDS:
        if kind == text:
            return kind
    raise LedgerError(f"unknown line kind {text!r} in the ledger")


class Ledger:
    """Issued statement lines per (contract, period start, period end), by revision."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            connection = sqlite3.connect(self.path, timeout=30)
        except (OSError, sqlite3.Error) as exc:
            raise LedgerError(f"{self.path}: cannot open the billing ledger: {exc}") from None
        try:
            connection.executescript(_SCHEMA)
            _add_missing_columns(connection)
            with connection:  # one transaction: all of a finalization or nothing
                yield connection
        except sqlite3.Error as exc:
            raise LedgerError(f"{self.path}: billing ledger error: {exc}") from None
        finally:
            connection.close()

    def issued(self, statement: Statement) -> tuple[int, list[Line]]:
        """How often the statement's period was finalized, and every line issued so far."""
        contract_id, start, end = statement.period_key
        with self._connect() as db:
            revisions = db.execute(
                "SELECT COALESCE(MAX(revision), 0) FROM revision "
                "WHERE contract_id = ? AND period_start = ? AND period_end = ?",
                (contract_id, start, end),
            ).fetchone()[0]
            rows = db.execute(
                "SELECT id, kind, machine, metered_hours, billable_hours, rate, amount, "
                "coverage, method, key, gaps, counter_anomalies FROM line "
                "WHERE contract_id = ? AND period_start = ? AND period_end = ? "
                "ORDER BY revision, seq",
                (contract_id, start, end),
            ).fetchall()
        lines = [
            Line(
                id=row[0],
                kind=_kind(row[1]),
                machine=row[2],
                metered_hours=Decimal(row[3]),
                billable_hours=Decimal(row[4]),
                rate=Decimal(row[5]),
                amount=Decimal(row[6]),
                coverage=Decimal(row[7]),
                method=row[8],
                key=row[9],
                gaps=int(row[10]),
                counter_anomalies=tuple(json.loads(row[11])),
            )
            for row in rows
        ]
        return int(revisions), lines

    def record(self, statements: Sequence[Statement]) -> list[Revision]:
        """Finalize: record each statement's not-yet-issued lines as its next revision.

        A statement without new lines (nothing changed since it was issued) records
        nothing. All statements are recorded in one transaction.
        """
        recorded = []
        issued_at = datetime.now(UTC).isoformat(timespec="seconds")
        with self._connect() as db:
            for statement in statements:
                contract_id, start, end = statement.period_key
                revisions = db.execute(
                    "SELECT COALESCE(MAX(revision), 0) FROM revision "
                    "WHERE contract_id = ? AND period_start = ? AND period_end = ?",
                    (contract_id, start, end),
                ).fetchone()[0]
                if revisions != statement.issued_revisions:
                    raise LedgerError(
                        f"{contract_id} {start}/{end} was finalized by someone else meanwhile; "
                        "export again"
                    )
                issued_ids = {
                    row[0]
                    for row in db.execute(
                        "SELECT id FROM line "
                        "WHERE contract_id = ? AND period_start = ? AND period_end = ?",
                        (contract_id, start, end),
                    )
                }
                new = [line for line in statement.lines if line.id not in issued_ids]
                if not new:
                    continue
                revision = revisions + 1
                total = sum((line.amount for line in new), Decimal(0))
                made = Revision(
                    contract_id,
                    start,
                    end,
                    revision,
                    issued_at,
                    statement.currency,
                    total,
                    len(new),
                )
                db.execute("INSERT INTO revision VALUES (?, ?, ?, ?, ?, ?, ?)", made.row())
                db.executemany(
                    "INSERT INTO line (contract_id, period_start, period_end, revision, seq, "
                    "id, kind, machine, metered_hours, billable_hours, rate, amount, coverage, "
                    "method, key, gaps, counter_anomalies) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    [
                        (
                            contract_id,
                            start,
                            end,
                            revision,
                            seq,
                            line.id,
                            line.kind,
                            line.machine,
                            format(line.metered_hours, "f"),
                            format(line.billable_hours, "f"),
                            format(line.rate, "f"),
                            format(line.amount, "f"),
                            format(line.coverage, "f"),
                            line.method,
                            line.key,
                            line.gaps,
                            json.dumps(list(line.counter_anomalies), ensure_ascii=False),
                        )
                        for seq, line in enumerate(new)
                    ],
                )
                recorded.append(made)
        return recorded

    def revisions(self, contract_id: str | None = None) -> list[Revision]:
        """Every finalization recorded, oldest first (optionally of one contract)."""
        query = (
            "SELECT r.contract_id, r.period_start, r.period_end, r.revision, r.issued_at, "
            "r.currency, r.total, COUNT(l.seq) FROM revision r LEFT JOIN line l "
            "USING (contract_id, period_start, period_end, revision) "
        )
        params: tuple[str, ...] = ()
        if contract_id is not None:
            query += "WHERE r.contract_id = ? "
            params = (contract_id,)
        query += "GROUP BY 1, 2, 3, 4 ORDER BY r.rowid"
        if not self.path.exists():
            return []
        with self._connect() as db:
            rows = db.execute(query, params).fetchall()
        return [
            Revision(r[0], r[1], r[2], int(r[3]), r[4], r[5], Decimal(r[6]), int(r[7]))
            for r in rows
        ]
