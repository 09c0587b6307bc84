"""Resubmitting stored dead letters once their cause is fixed (``runhours deadletters replay``).

Each dead letter is decoded again with today's settings and code; the valid ones are written
straight to InfluxDB (points plus their ``ingest_touched`` markers, so rollups recompute) and
marked replayed. Writing a point again is harmless (same series and time = same point), and
replayed ids are skipped unless asked, so a replay can be repeated safely.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from ingest.deadletter import DeadLetter, DeadLetterStore
from ingest.decode import decode_message
from ingest.points import touched_markers
from store import InfluxClient, encode_points


@dataclass
class ReplayReport:
    replayed: list[tuple[DeadLetter, int]] = field(default_factory=list)  # with points written
    failing: list[tuple[DeadLetter, str]] = field(default_factory=list)  # with today's reason
    skipped: int = 0  # replayed before

    @property
    def points(self) -> int:
        return sum(points for _, points in self.replayed)


def replay_deadletters(
    store: DeadLetterStore,
    client: InfluxClient,
    letters: Iterable[DeadLetter],
    *,
    max_message_bytes: int | None = None,
    again: bool = False,
    dry_run: bool = False,
) -> ReplayReport:
    """Replay ``letters`` (from ``store.letters()``, filtered by the caller)."""
    done = set() if again else store.replayed()
    report = ReplayReport()
    for letter in letters:
        if letter.id in done:
            report.skipped += 1
            continue
        decoded = decode_message(letter.topic, letter.payload, max_bytes=max_message_bytes)
        if not decoded.valid:
            report.failing.append((letter, decoded.error or "invalid"))
            continue
        if not dry_run:
            client.write_lines(decoded.lines)
            if decoded.touched:
                markers = touched_markers(decoded.touched, time.time_ns())
                client.write_lines(encode_points(markers), precision="ns")
            store.mark_replayed(letter, decoded.points, datetime.now(UTC))
        report.replayed.append((letter, decoded.points))
    return report
