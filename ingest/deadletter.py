"""Dead letters: messages the ingest cannot store, kept with the reason, never lost.

Each one is first appended to a file under ``<data_dir>/deadletters/`` and fsync'd — only
then is its original acknowledged — and then published (QoS 1, not retained) on
``wire.deadletter_topic(original_topic)`` for whoever watches
``runhours/v1/deadletter/#``. ``runhours deadletters list`` reads the files and
``runhours deadletters replay`` resubmits them once their cause is fixed.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, BinaryIO

log = logging.getLogger(__name__)


def rfc3339_ms(ts: datetime) -> str:
    """``2026-03-01T07:00:00.250Z``: UTC, millisecond precision."""
    if ts.tzinfo is None:
        raise ValueError(f"naive datetime {ts!r}: use an aware UTC time")
    return ts.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def deadletter_payload(topic: str, payload: bytes, reason: str, received_at: datetime) -> bytes:
    """JSON ``{"topic", "reason", "payload", ["payload_encoding",] "received_at"}``.

    The original payload is kept as text when it is UTF-8, else base64-encoded with
    ``"payload_encoding": "base64"``, so the dead letter itself is always valid JSON.
    """
    body: dict[str, Any] = {"topic": topic, "reason": reason}
    try:
        body["payload"] = payload.decode("utf-8")
    except UnicodeDecodeError:
        body["payload"] = base64.b64encode(payload).decode("ascii")
        body["payload_encoding"] = "base64"
    body["received_at"] = rfc3339_ms(received_at)
    return json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()


# -- durable dead letters ---------------------------------------------------------------------


@dataclass(frozen=True)
class DeadLetter:
    """One stored dead letter: the original message, why it was refused, and when."""

    id: str  # content id: the same message refused twice (redelivered) has the same id
    topic: str
    payload: bytes
    reason: str
    received_at: datetime
    worker: str
    count: int = 1  # times it was refused (redeliveries)

    def record(self) -> bytes:
        body = json.loads(
            deadletter_payload(self.topic, self.payload, self.reason, self.received_at)
        )
        return (
            json.dumps(
                {"id": self.id, "worker": self.worker, **body},
                ensure_ascii=False,
                separators=(",", ":"),
            ).encode()
            + b"\n"
        )


def deadletter_id(topic: str, payload: bytes) -> str:
    return hashlib.sha256(topic.encode() + b"\0" + payload).hexdigest()[:20]


class DeadLetterStore:
    """Append-only files under ``<data_dir>/deadletters/``: ``<worker>.jsonl`` (one JSON
    line per dead letter, fsync'd before its original is acknowledged) and
    ``replayed.jsonl`` (ids replayed by ``runhours deadletters replay``)."""

    def __init__(self, directory: Path, worker: str = "") -> None:
        self.directory = Path(directory)
        self.worker = worker
        self._file: BinaryIO | None = None

    @property
    def path(self) -> Path:
        return self.directory / f"{self.worker}.jsonl"

    def append(self, letters: Sequence[DeadLetter]) -> None:
        """Store ``letters`` durably (written and fsync'd) before returning."""
        if not letters:
            return
        if self._file is None:
            self.directory.mkdir(parents=True, exist_ok=True)
            self._file = self.path.open("ab")
        self._file.write(b"".join(letter.record() for letter in letters))
        self._file.flush()
        os.fsync(self._file.fileno())

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def letters(self) -> list[DeadLetter]:
        """Every stored dead letter, one per id (the first refusal, with the last reason and
        how often it was refused), oldest first."""
        by_id: dict[str, DeadLetter] = {}
        for path in sorted(self.directory.glob("*.jsonl")):
            if path.name == REPLAYED:
                continue
            for record in _records(path):
                try:
                    letter = _from_record(record)
                except (KeyError, ValueError, TypeError) as exc:
                    log.warning("%s: skipping an unreadable dead letter: %s", path, exc)
                    continue
                seen = by_id.get(letter.id)
                by_id[letter.id] = (
                    letter
                    if seen is None
                    else replace(seen, reason=letter.reason, count=seen.count + 1)
                )
        # Stable: letters of the same millisecond keep the order they were stored in.
        return sorted(by_id.values(), key=lambda d: d.received_at)

    def replayed(self) -> set[str]:
        """Ids already replayed successfully."""
        return {str(r["id"]) for r in _records(self.directory / REPLAYED) if "id" in r}

    def mark_replayed(self, letter: DeadLetter, points: int, at: datetime) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        line = json.dumps({"id": letter.id, "points": points, "replayed_at": rfc3339_ms(at)})
        with (self.directory / REPLAYED).open("ab") as out:
            out.write(line.encode() + b"\n")
            out.flush()
            os.fsync(out.fileno())


REPLAYED = "replayed.jsonl"


def _records(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    out = []
    for number, line in enumerate(path.read_bytes().splitlines(), 1):
        try:
            record = json.loads(line)
        except ValueError:  # a torn last line after a crash: its original was never acked
            log.warning("%s:%d: skipping a line that is not JSON", path, number)
            continue
        if isinstance(record, dict):
            out.append(record)
    return out


def _from_record(record: dict[str, Any]) -> DeadLetter:
    text = str(record["payload"])
    payload = (
        base64.b64decode(text) if record.get("payload_encoding") == "base64" else text.encode()
    )
    received = datetime.fromisoformat(str(record["received_at"]).replace("Z", "+00:00"))
    return DeadLetter(
        id=str(record["id"]),
        topic=str(record["topic"]),
        payload=payload,
        reason=str(record["reason"]),
        received_at=received,
        worker=str(record.get("worker", "")),
    )
