"""SQLite files under the data directory (the alert store, downtime reasons): one way to open them.

Every operation opens its own connection, so a file is safe to share between threads and
processes; WAL lets readers go on while one writer writes, and a busy file is waited for
(30 s) rather than failing at once. Writes take the lock up front (``BEGIN IMMEDIATE``): one
writer at a time, no lost updates.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Literal


class SqliteFile:
    """One SQLite file, created with ``schema`` (idempotent DDL) when opened.

    ``synchronous="NORMAL"`` trades the last commits before a power loss for fewer fsyncs
    (WAL keeps the file consistent either way); None keeps SQLite's default (FULL).
    """

    def __init__(
        self, path: Path, schema: str, synchronous: Literal["NORMAL"] | None = None
    ) -> None:
        self.path = Path(path)
        self.synchronous = synchronous
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.connect() as db:
            db.execute("PRAGMA journal_mode=WAL")
            db.executescript(schema)

    @contextmanager
    def connect(self) -> Iterator[sqlite3.Connection]:
        """A connection in autocommit mode (rows as ``sqlite3.Row``), closed afterwards."""
        db = sqlite3.connect(self.path, timeout=30, isolation_level=None)
        db.row_factory = sqlite3.Row
        try:
            db.execute("PRAGMA busy_timeout=30000")
            if self.synchronous is not None:
                db.execute(f"PRAGMA synchronous={self.synchronous}")
            yield db
        finally:
            db.close()

    @contextmanager
    def write(self) -> Iterator[sqlite3.Connection]:
        """A write transaction (BEGIN IMMEDIATE), committed on success, rolled back on error."""
        with self.connect() as db:
            db.execute("BEGIN IMMEDIATE")
            try:
                yield db
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")
