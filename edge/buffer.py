"""Store-and-forward: samples wait on disk (SQLite, WAL) until the broker acknowledged them.

Every sample is committed here before it is published and deleted only after the PUBACK of
the message that carried it, so neither a broker outage nor ``kill -9`` of the agent loses
it (a sample may be published twice; the ingest stores a redelivered sample as the same
point). The buffer works like a queue with a read cursor:

- ``append`` adds samples (one transaction), then enforces the bounds;
- ``take`` hands out the oldest samples not yet handed out as one message (they are now
  *in flight*), with the message's ``seq`` and ``offset`` assigned and persisted in the same
  transaction;
- ``ack`` deletes a batch once its message was acknowledged;
- ``rewind`` (at every (re)connect) puts everything in flight back in line, to be resent.

A message is resent exactly as it was first assigned: the same samples under the same
``seq`` and ``offset``, even after ``kill -9`` (the ``messages`` table keeps each
unacknowledged message's row range). So the ingest sees a resend as a duplicate, never as
a gap, and ``seq`` gaps mean messages lost after the broker acknowledged them.

Bounds: ``max_bytes`` caps the total wire size of the buffered samples (the encoded JSON
that will be published, counters included; the file itself is somewhat larger) and
``max_age`` caps how long a sample may wait, measured from when it was appended (wall
clock, so replayed or simulated timestamps do not matter). Overflow drops the oldest
samples that are not in flight (in-flight ones are on their way; they are at most
``max_in_flight × max_batch``); every drop is counted in the persisted ``dropped_total``
and logged.

The per-agent message sequence number ``seq``, the running ``offset`` (samples assigned to
messages so far) and the timestamp of the newest sample ever appended (``last_ts_ms``, so a
replay source can resume after a restart) are persisted too. Dropped samples never reach a
message, so they move neither ``seq`` nor ``offset``: edge drops are counted here
(``dropped_total``), never reported downstream as transit gaps.

A full disk is met like a full buffer: every write runs in ``_transaction``, which on
SQLITE_FULL deletes the buffer's reserve file (``<buffer>.reserve``, 1 MiB set aside at
open so there is room to recover), caps the buffer below what it holds, drops the oldest
unsent samples (counted and logged as drops, as overflow is), and retries: live samples
keep flowing. The cap lifts once the disk has room again.

One process at a time: the file is opened in SQLite's exclusive locking mode, so a second
agent on the same buffer fails with ``BufferInUse`` instead of corrupting the sequence.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import re
import shutil
import sqlite3
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, TypeVar

from common.errors import RunhoursError
from edge.readings import Reading
from wire import WireError, encode_sample

log = logging.getLogger("runhours.edge.buffer")

COUNTER_NAME = re.compile(r"[a-z][a-z0-9_]{0,63}")
DEFAULT_MAX_BYTES = 256 * 1024 * 1024
DEFAULT_MAX_AGE_S = 7 * 24 * 3600.0
DROP_LOG_INTERVAL_S = 10.0
DEFAULT_RESERVE_BYTES = 1024 * 1024  # set aside on disk to recover from a full one
WAL_LIMIT_BYTES = 4 * 1024 * 1024  # the WAL shrinks back to this after a checkpoint

T = TypeVar("T")

SCHEMA = """
CREATE TABLE IF NOT EXISTS samples (
    id INTEGER PRIMARY KEY AUTOINCREMENT,  -- never reused: the historical watermark needs it
    added_ms INTEGER NOT NULL,             -- wall clock at append, for max_age
    body BLOB NOT NULL,                    -- the sample's wire JSON (wire.encode_sample)
    counters BLOB                          -- the machine's counters at this sample, JSON
);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS messages (     -- assigned, not yet acknowledged: resent as they are
    seq INTEGER PRIMARY KEY,
    first_id INTEGER NOT NULL,
    last_id INTEGER NOT NULL,
    "offset" INTEGER NOT NULL
);
"""


class EdgeBufferError(RunhoursError, RuntimeError):
    """The buffer file cannot be opened or used."""


class BufferInUse(EdgeBufferError):
    """Another process holds the buffer file."""


@dataclass(frozen=True)
class Batch:
    """Consecutive buffered samples handed out as one message."""

    first_id: int
    last_id: int
    bodies: list[bytes]
    counters: bytes | None  # of the batch's last sample
    nbytes: int
    seq: int = 0  # the message's seq …
    offset: int = 0  # … and the samples this agent put into messages before it

    def __len__(self) -> int:
        return len(self.bodies)


def encode_counters(counters: Mapping[str, float]) -> bytes | None:
    """Counters as the wire JSON of a telemetry message's ``counters``; ``None`` when empty.

    Checked here, not at publish time: one bad name would make the ingest reject the whole
    batch that carries it. Formatted directly (a validated name needs no escaping, and JSON
    writes a finite float as ``repr`` does): this runs once per sample.
    """
    if not counters:
        return None
    parts = []
    for name, value in counters.items():
        if name not in _CHECKED_NAMES:
            if not COUNTER_NAME.fullmatch(name):
                raise WireError(f"counters: name {name!r} must match [a-z][a-z0-9_]{{0,63}}")
            _CHECKED_NAMES.add(name)
        number = float(value)
        if not math.isfinite(number):
            raise WireError(f"counters: {name!r} is not a finite number: {value}")
        parts.append(f'"{name}":{number!r}')
    return ("{" + ",".join(parts) + "}").encode()


_CHECKED_NAMES: set[str] = set()


class SampleBuffer:
    """The on-disk queue of one edge agent (see the module docstring)."""

    def __init__(
        self,
        path: Path,
        *,
        max_bytes: int = DEFAULT_MAX_BYTES,
        max_age_s: float = DEFAULT_MAX_AGE_S,
        sync: Literal["normal", "full"] = "normal",
        clock: Callable[[], float] = time.time,
        reserve_bytes: int = DEFAULT_RESERVE_BYTES,
    ) -> None:
        if max_bytes <= 0 or max_age_s <= 0:
            raise ValueError("max_bytes and max_age_s must be positive")
        self.path = Path(path)
        self.reserve_path = self.path.with_name(self.path.name + ".reserve")
        self.reserve_bytes = reserve_bytes
        self._cap: int | None = None  # a lower max_bytes while the disk is full
        self.max_bytes = max_bytes
        self.max_age_s = max_age_s
        self._clock = clock
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(self.path, isolation_level=None, timeout=0)
        try:
            self._db.execute("PRAGMA locking_mode=EXCLUSIVE")
            # A new file gives freed pages back to the disk on request (incremental_vacuum):
            # what a full disk needs. (An older buffer file keeps its setting.)
            self._db.execute("PRAGMA auto_vacuum=INCREMENTAL")
            # NORMAL survives a killed process (WAL); FULL also survives power loss.
            self._db.execute(f"PRAGMA synchronous={sync.upper()}")
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute(f"PRAGMA journal_size_limit={WAL_LIMIT_BYTES}")
            # Checkpoint before the WAL outgrows half the reserve: on a full disk, freeing the
            # reserve must leave room to move the WAL into the database file.
            self._page_size = int(self._db.execute("PRAGMA page_size").fetchone()[0])
            autocheckpoint = max(16, reserve_bytes // 2 // self._page_size)
            self._db.execute(f"PRAGMA wal_autocheckpoint={autocheckpoint}")
            self._db.executescript(SCHEMA)
            self._db.execute("BEGIN IMMEDIATE")  # takes the exclusive lock for good
            self._db.execute("COMMIT")
        except sqlite3.OperationalError as exc:
            self._db.close()
            if "locked" in str(exc):
                raise BufferInUse(
                    f"{self.path}: edge buffer is in use by another process (one agent per "
                    "buffer: give each agent its own edge.buffer.path)"
                ) from None
            raise EdgeBufferError(f"{self.path}: cannot open the edge buffer: {exc}") from None
        except sqlite3.DatabaseError as exc:
            self._db.close()
            raise EdgeBufferError(
                f"{self.path}: not an edge buffer ({exc}); move it away or choose another path"
            ) from None
        count, nbytes = self._db.execute(
            "SELECT COUNT(*), COALESCE(SUM(length(body) + IFNULL(length(counters), 0)), 0) "
            "FROM samples"
        ).fetchone()
        self._count: int = count
        self._bytes: int = nbytes
        self._cursor = 0  # highest id handed out since the last rewind
        self._in_flight = 0
        self._last_id = self._sequence()
        self._seq = self._meta("seq")
        self._offset = self._meta("offset")
        # Messages assigned and not acknowledged (seq → first id, last id, offset), and those
        # of them waiting to be resent since the last rewind.
        self._assigned = self._load_assigned()
        self._resend: list[int] = sorted(self._assigned)
        self.dropped = 0  # dropped by this process (dropped_total spans restarts)
        self._dropped_total = self._meta("dropped_total")  # kept in memory: readable after close
        self._unlogged_drops = 0
        self._unpersisted = 0  # dropped while nothing could be written (see _unbuffered)
        self._last_drop_log = self._last_full_log = -math.inf
        self._make_reserve()

    # -- state ------------------------------------------------------------------------------

    @property
    def count(self) -> int:
        """Samples in the buffer, in flight included."""
        return self._count

    @property
    def nbytes(self) -> int:
        """Wire size of the buffered samples (what ``max_bytes`` bounds)."""
        return self._bytes

    @property
    def unsent(self) -> int:
        """Samples not handed out since the last rewind."""
        return self._count - self._in_flight

    @property
    def in_flight(self) -> int:
        return self._in_flight

    @property
    def cursor(self) -> int:
        """Row id of the newest sample handed out since the last rewind (0: none)."""
        return self._cursor

    @property
    def last_id(self) -> int:
        """Row id of the newest sample ever appended (ids are never reused)."""
        return self._last_id

    @property
    def dropped_total(self) -> int:
        """Samples dropped by overflow or age over the buffer's whole life."""
        return self._dropped_total

    @property
    def last_ts_ms(self) -> int | None:
        """Timestamp of the newest sample ever appended; a replay resumes after it."""
        row = self._db.execute("SELECT value FROM meta WHERE key = 'last_ts_ms'").fetchone()
        return None if row is None else int(row[0])

    def source_state(self, key: str) -> int | None:
        """A number the source keeps across restarts (e.g. an hour meter's rollovers)."""
        row = self._db.execute("SELECT value FROM meta WHERE key = ?", (f"source.{key}",))
        found = row.fetchone()
        return None if found is None else int(found[0])

    def keep_source_state(self, values: Mapping[str, int]) -> None:
        """Persist numbers for ``source_state`` (one transaction)."""

        def store() -> None:
            for key, value in values.items():
                self._set_meta(f"source.{key}", value)

        self._transaction(store)

    @property
    def seq(self) -> int:
        """The ``seq`` the next new message will carry."""
        return self._seq

    @property
    def delivered(self) -> tuple[int, int]:
        """``(seq, offset)`` such that every message with a smaller seq, and so every sample
        before that offset, was acknowledged (what ``Status.delivered_seq`` reports)."""
        if self._assigned:
            first = min(self._assigned)
            return first, self._assigned[first][2]
        return self._seq, self._offset

    # -- operations -------------------------------------------------------------------------

    def append(self, readings: Iterable[Reading]) -> int:
        """Commit samples (one transaction), then drop what exceeds the bounds. Returns how many."""
        now_ms = int(self._clock() * 1000)
        rows: list[tuple[int, bytes, bytes | None]] = []
        nbytes = 0
        last_ts = None
        for reading in readings:
            body = encode_sample(reading.sample)
            counters = encode_counters(reading.counters)
            rows.append((now_ms, body, counters))
            nbytes += len(body) + (len(counters) if counters else 0)
            last_ts = reading.sample.ts_ms
        if not rows:
            return 0
        db = self._db

        def insert() -> int:
            db.executemany("INSERT INTO samples (added_ms, body, counters) VALUES (?, ?, ?)", rows)
            db.execute(
                "INSERT INTO meta (key, value) VALUES ('last_ts_ms', ?) "
                "ON CONFLICT (key) DO UPDATE SET value = max(value, excluded.value)",
                (last_ts,),
            )
            self._count += len(rows)
            self._bytes += nbytes
            return self._enforce_bounds(now_ms)

        try:
            dropped = self._transaction(insert, room=nbytes)
        except EdgeBufferError as exc:  # the disk is full and we hold nothing left to drop
            self._unbuffered(len(rows), exc)
            return len(rows)
        if self._unpersisted:
            unpersisted = self._unpersisted
            with contextlib.suppress(EdgeBufferError):  # else: with the next write
                self._transaction(lambda: self._add_dropped_total(unpersisted))
                self._unpersisted -= unpersisted
        self._last_id = self._sequence()
        self._note_drops(dropped)
        return len(rows)

    def _unbuffered(self, n: int, why: Exception) -> None:
        """Samples that could not be stored at all: counted as dropped (persisted into
        ``dropped_total`` with the next write that works), never silently gone."""
        self._unpersisted += n
        self._dropped_total += n
        self.dropped += n
        now = time.monotonic()
        if now - self._last_drop_log >= DROP_LOG_INTERVAL_S:
            log.error("%s; %d samples not buffered (counted as dropped)", why, n)
            self._last_drop_log = now

    def take(self, limit: int, upto: int | None = None) -> Batch | None:
        """Hand out the next message: first any unacknowledged one to resend as it was, else
        up to ``limit`` of the oldest unsent samples (ids ``<= upto`` if given) under a new
        ``seq`` and ``offset``, persisted before they are returned."""
        while self._resend:
            seq = self._resend.pop(0)
            first, last, offset = self._assigned[seq]
            batch = self._batch(first, last, -1, seq, offset)
            if batch is not None:
                return batch
            self._forget(seq)  # its samples are gone (discarded): nothing to resend
        floor = max(self._cursor, self._assigned_upto())
        rows = self._rows(floor, self._last_id if upto is None else upto, limit)
        if not rows:
            return None
        seq, offset = self._seq, self._offset
        first, last = rows[0][0], rows[-1][0]

        def assign() -> None:
            self._db.execute(
                'INSERT INTO messages (seq, first_id, last_id, "offset") VALUES (?, ?, ?, ?)',
                (seq, first, last, offset),
            )
            self._set_meta("seq", seq + 1)
            self._set_meta("offset", offset + len(rows))

        self._transaction(assign)
        self._seq, self._offset = seq + 1, offset + len(rows)
        self._assigned[seq] = (first, last, offset)
        return self._hand_out(rows, seq, offset)

    def _rows(self, after: int, upto: int, limit: int) -> list[tuple[int, bytes, bytes | None]]:
        return self._db.execute(
            "SELECT id, body, counters FROM samples WHERE id > ? AND id <= ? ORDER BY id LIMIT ?",
            (after, upto, limit),
        ).fetchall()

    def _batch(self, first: int, last: int, limit: int, seq: int, offset: int) -> Batch | None:
        rows = self._rows(first - 1, last, limit)
        return self._hand_out(rows, seq, offset) if rows else None

    def _hand_out(
        self, rows: list[tuple[int, bytes, bytes | None]], seq: int, offset: int
    ) -> Batch:
        bodies = [row[1] for row in rows]
        counters = rows[-1][2]
        nbytes = sum(len(b) for b in bodies) + sum(len(r[2]) for r in rows if r[2])
        batch = Batch(rows[0][0], rows[-1][0], bodies, counters, nbytes, seq, offset)
        self._cursor = max(self._cursor, batch.last_id)
        self._in_flight += len(batch)
        return batch

    def _assigned_upto(self) -> int:
        """Row id of the newest sample assigned to an unacknowledged message (0: none)."""
        return max((last for _, last, _ in self._assigned.values()), default=0)

    def _forget(self, seq: int) -> None:
        self._db.execute("DELETE FROM messages WHERE seq = ?", (seq,))
        self._assigned.pop(seq, None)

    def ack(self, batch: Batch) -> int:
        """Delete a batch whose message the broker acknowledged. Returns samples deleted."""

        def delete() -> int:
            deleted = self._db.execute(
                "DELETE FROM samples WHERE id BETWEEN ? AND ?", (batch.first_id, batch.last_id)
            ).rowcount
            self._forget(batch.seq)
            return int(deleted)

        deleted = self._transaction(delete)
        self._in_flight = max(0, self._in_flight - len(batch))
        if deleted == len(batch):
            self._count -= deleted
            self._bytes -= batch.nbytes
        else:  # acked after a rewind/discard changed the rows; recount rather than guess
            self._reload()
        return int(deleted)

    def rewind(self) -> int:
        """Put everything in flight back in line (after a disconnect); expire old samples.

        Returns ``last_id``, the watermark: samples with ids up to it were buffered while
        no connection was up.
        """
        self._cursor = 0
        self._in_flight = 0
        self._resend = sorted(self._assigned)
        self.expire()
        return self._last_id

    def expire(self) -> int:
        """Drop samples older than ``max_age`` (not those in flight); lift a disk-full cap
        once the disk has room again. Returns how many were dropped."""
        dropped = self._transaction(lambda: self._enforce_bounds(int(self._clock() * 1000)))
        self._note_drops(dropped)
        self._give_back_free_pages()
        if self._cap is not None and self._room_again():
            log.warning("edge buffer %s: the disk has room again; the cap is lifted", self.path)
            self._cap = None
        return dropped

    def _give_back_free_pages(self) -> None:
        """Return the pages delivered samples left free to the disk, once they add up to the
        reserve: after an outage the file shrinks back, and a disk it filled has room."""
        free_pages = int(self._db.execute("PRAGMA freelist_count").fetchone()[0])
        if free_pages * self._page_size >= max(self.reserve_bytes, 64 * 1024):
            with contextlib.suppress(sqlite3.OperationalError):
                self._db.executescript("PRAGMA incremental_vacuum;")
            self._checkpoint()

    def discard_all(self) -> int:
        """Drop every buffered sample (counted as dropped), e.g. leftovers of a simulation."""
        self.rewind()

        def delete_all() -> int:
            dropped = int(self._db.execute("DELETE FROM samples").rowcount)
            self._db.execute("DELETE FROM messages")
            self._add_dropped_total(dropped)
            return dropped

        dropped = self._transaction(delete_all)
        self._assigned.clear()
        self._resend.clear()
        self._reload()
        self.dropped += dropped
        return int(dropped)

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> SampleBuffer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- internals --------------------------------------------------------------------------

    def _enforce_bounds(self, now_ms: int) -> int:
        """Inside a transaction: drop the oldest unsent samples past max_bytes or max_age."""
        excess = self._bytes - (
            self.max_bytes if self._cap is None else min(self.max_bytes, self._cap)
        )
        cutoff = now_ms - int(self.max_age_s * 1000)
        # Never samples of a message handed out, nor of one assigned and waiting to be
        # resent: a message is resent as it was.
        floor = max(self._cursor, self._assigned_upto())
        oldest = self._db.execute(
            "SELECT added_ms FROM samples WHERE id > ? ORDER BY id LIMIT 1", (floor,)
        ).fetchone()
        if oldest is None or (excess <= 0 and oldest[0] >= cutoff):
            return 0
        freed = dropped = 0
        last = None
        rows = self._db.execute(
            "SELECT id, added_ms, length(body) + IFNULL(length(counters), 0) FROM samples "
            "WHERE id > ? ORDER BY id",
            (floor,),
        )
        for row_id, added_ms, size in rows:
            if freed >= excess and added_ms >= cutoff:
                break
            freed += size
            dropped += 1
            last = row_id
        if last is None:
            return 0
        self._db.execute("DELETE FROM samples WHERE id > ? AND id <= ?", (floor, last))
        self._add_dropped_total(dropped)
        self._count -= dropped
        self._bytes -= freed
        return dropped

    def _transaction(self, work: Callable[[], T], room: int = 0) -> T:
        """Run ``work`` in one transaction. On a full disk: make room (``_disk_full``) and
        try once more; a second failure raises ``EdgeBufferError``."""
        for attempt in (1, 2):
            self._db.execute("BEGIN IMMEDIATE")
            try:
                result = work()
                self._db.execute("COMMIT")
            except sqlite3.OperationalError as exc:
                self._rollback()
                if getattr(exc, "sqlite_errorcode", None) != sqlite3.SQLITE_FULL:
                    raise
                if attempt == 2:
                    raise EdgeBufferError(
                        f"edge buffer {self.path}: the disk is full and dropping its oldest "
                        "samples made no room: free disk space"
                    ) from None
                self._disk_full(room)
                continue
            except BaseException:
                self._rollback()
                raise
            if self._cap is not None:  # keep the WAL from taking the room back
                self._checkpoint()
            return result
        raise AssertionError("unreachable")

    def _checkpoint(self) -> None:
        """Move the WAL into the database file and truncate it (best effort: a full disk
        may refuse; the next write tries again)."""
        try:
            self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        except sqlite3.OperationalError as exc:
            log.debug("edge buffer %s: checkpoint: %s", self.path, exc)

    def _rollback(self) -> None:
        if self._db.in_transaction:  # SQLite may have rolled back itself (SQLITE_FULL)
            self._db.execute("ROLLBACK")
        self._reload()

    def _disk_full(self, room: int) -> None:
        """The disk is full: free the reserve, then drop the oldest unsent samples 10 % at a
        time (giving their pages back to the disk) until there is room for the write, for
        the reserve again and as much to spare; cap the buffer there until the disk has
        room again."""
        self.reserve_path.unlink(missing_ok=True)
        self._checkpoint()  # the WAL into the database file, in the reserve's room
        dropped, step = 0, max(4 * room, 64 * 1024)
        cap = self._bytes
        while True:
            cap = max(0, cap - max(step, self._bytes // 10))
            self._cap = cap
            self._db.execute("BEGIN IMMEDIATE")
            try:
                freed = self._enforce_bounds(int(self._clock() * 1000))
                self._db.execute("COMMIT")
            except sqlite3.OperationalError:
                self._rollback()
                break  # no room even to delete: the caller's retry will say so
            except BaseException:
                self._rollback()
                raise
            dropped += freed
            self._checkpoint()
            with contextlib.suppress(sqlite3.OperationalError):
                # The freed pages back to the disk (executescript: it steps the pragma to
                # the end; execute frees one page).
                self._db.executescript("PRAGMA incremental_vacuum;")
            self._checkpoint()
            free = shutil.disk_usage(self.path.parent).free
            if free >= 2 * self.reserve_bytes + room or not freed or cap == 0:
                break
        if shutil.disk_usage(self.path.parent).free >= 2 * self.reserve_bytes:
            self._make_reserve()  # room to recover the next time
        now = time.monotonic()
        if now - self._last_full_log < DROP_LOG_INTERVAL_S:
            self._note_drops(dropped)
            return
        self._last_full_log = now
        log.error(
            "edge buffer %s: the disk is full (%d bytes free now): dropped the %d oldest "
            "samples and capped the buffer at %d bytes until there is room again; live "
            "samples keep flowing. Free disk space, or lower edge.buffer.max_bytes",
            self.path,
            shutil.disk_usage(self.path.parent).free,
            dropped,
            self._cap,
        )
        self._note_drops(dropped)

    def _room_again(self) -> bool:
        """The disk has room for the reserve and well beyond it."""
        free = shutil.disk_usage(self.path.parent).free
        return free >= 4 * self.reserve_bytes and self._make_reserve()

    def _make_reserve(self) -> bool:
        """Set ``reserve_bytes`` aside on disk; False when there is no room for it."""
        if self.reserve_bytes <= 0:
            return True
        try:
            if (
                self.reserve_path.exists()
                and self.reserve_path.stat().st_size >= self.reserve_bytes
            ):
                return True
            with self.reserve_path.open("wb") as reserve:
                os.posix_fallocate(reserve.fileno(), 0, self.reserve_bytes)
        except OSError:
            self.reserve_path.unlink(missing_ok=True)
            return False
        return True

    def _add_dropped_total(self, n: int) -> None:
        self._db.execute(
            "INSERT INTO meta (key, value) VALUES ('dropped_total', ?) "
            "ON CONFLICT (key) DO UPDATE SET value = value + excluded.value",
            (n,),
        )

    def _note_drops(self, dropped: int) -> None:
        """After a commit that dropped samples: count and (rate-limited) log them."""
        if not dropped:
            return
        self._dropped_total = self._meta("dropped_total") + self._unpersisted
        self.dropped += dropped
        self._unlogged_drops += dropped
        now = time.monotonic()
        if now - self._last_drop_log >= DROP_LOG_INTERVAL_S:  # at most one line per interval
            log.warning(
                "edge buffer %s full or expired (max_bytes=%d, max_age=%gs): dropped the "
                "%d oldest samples (dropped_total=%d)",
                self.path,
                self.max_bytes,
                self.max_age_s,
                self._unlogged_drops,
                self.dropped_total,
            )
            self._unlogged_drops = 0
            self._last_drop_log = now

    def _meta(self, key: str) -> int:
        row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return 0 if row is None else int(row[0])

    def _set_meta(self, key: str, value: int) -> None:
        self._db.execute(
            "INSERT INTO meta (key, value) VALUES (?, ?) "
            "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            (key, value),
        )

    def _load_assigned(self) -> dict[int, tuple[int, int, int]]:
        return {
            seq: (first, last, offset)
            for seq, first, last, offset in self._db.execute(
                'SELECT seq, first_id, last_id, "offset" FROM messages ORDER BY seq'
            )
        }

    def _sequence(self) -> int:
        row = self._db.execute("SELECT seq FROM sqlite_sequence WHERE name = 'samples'").fetchone()
        return 0 if row is None else int(row[0])

    def _reload(self) -> None:
        count, nbytes = self._db.execute(
            "SELECT COUNT(*), COALESCE(SUM(length(body) + IFNULL(length(counters), 0)), 0) "
            "FROM samples"
        ).fetchone()
        self._count, self._bytes = count, nbytes
        self._dropped_total = self._meta("dropped_total") + self._unpersisted
        self._seq, self._offset = self._meta("seq"), self._meta("offset")
        self._assigned = self._load_assigned()
        (self._in_flight,) = self._db.execute(
            "SELECT COUNT(*) FROM samples WHERE id <= ?", (self._cursor,)
        ).fetchone()
