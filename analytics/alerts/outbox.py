"""The delivery outbox: the history table, read in order by each channel after its cursor.

Every channel (MQTT, InfluxDB, webhook) has a row in ``cursors``: the last history row it
delivered, and the failed attempts at the next one.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from analytics.alerts.schema import AlertFile


@dataclass(frozen=True)
class Delivery:
    """One history row waiting for a channel: its sequence number and JSON body."""

    seq: int
    body: dict[str, Any]


class Outbox(AlertFile):
    """The channels' cursors over the history (see the module docstring)."""

    def open_channel(self, channel: str, from_start: bool = False) -> int:
        """Make sure ``channel`` has a cursor; a new one starts after the current history
        (or at its beginning with ``from_start``). Returns the cursor."""
        with self._file.write() as db:
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
        with self._file.connect() as db:
            rows = db.execute(
                "SELECT seq, body FROM transitions WHERE seq > (SELECT seq FROM cursors WHERE channel = ?) "
                "ORDER BY seq LIMIT ?",
                (channel, limit),
            ).fetchall()
        return [Delivery(int(r["seq"]), json.loads(r["body"])) for r in rows]

    def delivered(self, channel: str, seq: int) -> None:
        with self._file.write() as db:
            db.execute(
                "UPDATE cursors SET seq = max(seq, ?), attempts = 0, last_error = NULL WHERE channel = ?",
                (seq, channel),
            )

    def failed(self, channel: str, error: str) -> int:
        """Count a failed attempt; returns the attempts so far for the head row."""
        with self._file.write() as db:
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
        with self._file.connect() as db:
            rows = db.execute(
                "SELECT c.channel, (SELECT count(*) FROM transitions t WHERE t.seq > c.seq) AS n FROM cursors c"
            ).fetchall()
        return {r["channel"]: int(r["n"]) for r in rows}
