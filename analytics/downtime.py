"""Downtime reasons: operators say why a machine stopped; the report adds it all up.

Stops come from telemetry (``analytics.stops``, ``analytics.floor``); the reasons people
give them are the record, kept in SQLite under the data directory
(``<data_dir>/downtime.sqlite3``, next to the alert store) with who gave each and when,
and every change in a log (the audit trail). A stop is named by its machine and start.

The report (a Pareto) sums the stops of a range per reason, with the stops nobody gave a
reason as ``unassigned``: its hours add up exactly to the stop hours of the range.

>>> store = DowntimeStore.in_data_dir(Path("var"))                                    # doctest: +SKIP
>>> assign(client, store, plant, MachineKey("plant1", "cnc-01"), at, "TOOL", by="jdoe")  # doctest: +SKIP
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from analytics.floor import MachineFloor, floor_runs
from analytics.machines import MachineKey
from analytics.plant import Plant, PlantError
from analytics.shifts import ShiftRun
from analytics.sqlite import SqliteFile
from analytics.stops import Stop
from store import InfluxClient
from store.schema import UNASSIGNED
from wire import from_epoch_ms, to_epoch_ms

STORE_FILE = "downtime.sqlite3"
LOOK_AROUND = timedelta(days=1)  # a stop lies in one shift run: at most a day long

_SCHEMA = """
CREATE TABLE IF NOT EXISTS assignments (
    site TEXT NOT NULL,
    machine TEXT NOT NULL,
    start_ms INTEGER NOT NULL,
    end_ms INTEGER NOT NULL,
    reason TEXT NOT NULL,
    by TEXT NOT NULL,
    at_ms INTEGER NOT NULL,
    note TEXT NOT NULL DEFAULT '',
    PRIMARY KEY (site, machine, start_ms)
);
CREATE TABLE IF NOT EXISTS log (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    site TEXT NOT NULL,
    machine TEXT NOT NULL,
    start_ms INTEGER NOT NULL,
    reason TEXT,
    previous TEXT,
    by TEXT NOT NULL,
    at_ms INTEGER NOT NULL,
    note TEXT NOT NULL DEFAULT ''
);
"""


class DowntimeError(ValueError):
    """A reason cannot be given (no such stop, unknown reason, no name)."""


@dataclass(frozen=True)
class Assignment:
    """The reason given to the stop of ``key`` starting at ``start_ms``."""

    key: MachineKey
    start_ms: int
    end_ms: int  # the stop's end when the reason was given (it may have gone on)
    reason: str
    by: str
    at: datetime
    note: str = ""

    def to_json(self) -> dict[str, Any]:
        return {
            "site": self.key.site,
            "machine": self.key.machine,
            "start": _iso(self.start_ms),
            "reason": self.reason,
            "by": self.by,
            "at": _iso(to_epoch_ms(self.at)),
            "note": self.note,
        }


def _iso(ms: int) -> str:
    return from_epoch_ms(ms).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class DowntimeStore:
    """The reasons given to stops, and their log (see the module docstring)."""

    def __init__(self, path: Path) -> None:
        self._file = SqliteFile(path, _SCHEMA)
        self.path = self._file.path

    @classmethod
    def in_data_dir(cls, data_dir: Path) -> DowntimeStore:
        return cls(Path(data_dir) / STORE_FILE)

    @staticmethod
    def _assignment(row: sqlite3.Row) -> Assignment:
        return Assignment(
            MachineKey(row["site"], row["machine"]),
            int(row["start_ms"]),
            int(row["end_ms"]),
            row["reason"],
            row["by"],
            from_epoch_ms(int(row["at_ms"])),
            row["note"],
        )

    def assignments(
        self, keys: Iterable[MachineKey] | None = None, lo_ms: int = 0, hi_ms: int = 2**62
    ) -> dict[tuple[MachineKey, int], Assignment]:
        """The reasons of stops starting in ``[lo_ms, hi_ms)`` (of ``keys``, default all)."""
        wanted = set(keys) if keys is not None else None
        with self._file.connect() as db:
            rows = db.execute(
                "SELECT * FROM assignments WHERE start_ms >= ? AND start_ms < ?", (lo_ms, hi_ms)
            ).fetchall()
        found = [self._assignment(r) for r in rows]
        return {(a.key, a.start_ms): a for a in found if wanted is None or a.key in wanted}

    def history(
        self, key: MachineKey | None = None, start_ms: int | None = None
    ) -> list[dict[str, Any]]:
        """The log (oldest first), of one stop or all."""
        query, args = "SELECT * FROM log", ()
        if key is not None and start_ms is not None:
            query += " WHERE site = ? AND machine = ? AND start_ms = ?"
            args = (key.site, key.machine, start_ms)  # type: ignore[assignment]
        with self._file.connect() as db:
            rows = db.execute(query + " ORDER BY seq", args).fetchall()
        return [
            {
                "site": r["site"],
                "machine": r["machine"],
                "start": _iso(int(r["start_ms"])),
                "reason": r["reason"],
                "previous": r["previous"],
                "by": r["by"],
                "at": _iso(int(r["at_ms"])),
                "note": r["note"],
            }
            for r in rows
        ]

    def put(
        self,
        key: MachineKey,
        stop: Stop,
        reason: str | None,
        by: str,
        note: str = "",
        at: datetime | None = None,
    ) -> Assignment | None:
        """Give ``stop`` a reason (None: take it away), logged; returns the assignment."""
        when = to_epoch_ms(at or datetime.now(UTC))
        with self._file.write() as db:
            row = db.execute(
                "SELECT reason FROM assignments WHERE site = ? AND machine = ? AND start_ms = ?",
                (key.site, key.machine, stop.start_ms),
            ).fetchone()
            previous = row["reason"] if row else None
            if reason is None:
                db.execute(
                    "DELETE FROM assignments WHERE site = ? AND machine = ? AND start_ms = ?",
                    (key.site, key.machine, stop.start_ms),
                )
            else:
                db.execute(
                    "INSERT OR REPLACE INTO assignments VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    (key.site, key.machine, stop.start_ms, stop.end_ms, reason, by, when, note),
                )
            db.execute(
                "INSERT INTO log (site, machine, start_ms, reason, previous, by, at_ms, note) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (key.site, key.machine, stop.start_ms, reason, previous, by, when, note),
            )
        if reason is None:
            return None
        return Assignment(key, stop.start_ms, stop.end_ms, reason, by, from_epoch_ms(when), note)


# -- finding a stop and giving it a reason ---------------------------------------------------


def find_stop(
    client: InfluxClient, plant: Plant, key: MachineKey, at: datetime
) -> tuple[MachineFloor, ShiftRun, Stop]:
    """The stop of ``key`` (at least min_stop long) that holds the instant ``at`` (shown
    in its own zone when there is none)."""
    t = to_epoch_ms(at)
    floors = floor_runs(client, plant, [key], at - LOOK_AROUND, at + timedelta(milliseconds=1))
    for floor in floors:
        for run, stop in floor.stops:
            if stop.start_ms <= t < max(stop.end_ms, stop.start_ms + 1):
                return floor, run, stop
    shown = at.isoformat(timespec="seconds").replace("+00:00", "Z")
    minimum = int(plant.min_stop.total_seconds() // 60)
    raise DowntimeError(
        f"no stop of {key} at {shown}: a stop is planned time the machine spent in "
        f"{', '.join(plant.stop_states)} for at least {minimum} min (`runhours downtime list` "
        "shows them)"
    )


def assign(
    client: InfluxClient,
    store: DowntimeStore,
    plant: Plant,
    key: MachineKey,
    at: datetime,
    reason: str | None,
    *,
    by: str,
    note: str = "",
) -> tuple[Stop, Assignment | None]:
    """Give the stop of ``key`` at ``at`` the reason ``reason`` (None: clear it)."""
    if not by.strip():
        raise DowntimeError("by: say who gives the reason (a name or initials)")
    if reason is not None:
        try:
            plant.reason(reason)
        except PlantError as exc:
            raise DowntimeError(str(exc)) from None
    _, _, stop = find_stop(client, plant, key, at)
    return stop, store.put(key, stop, reason, by.strip(), note)


# -- the report ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class ListedStop:
    """A stop with its machine, shift run and reason (None: unassigned)."""

    key: MachineKey
    line: str
    run: ShiftRun
    stop: Stop
    assignment: Assignment | None

    def to_json(self, plant: Plant) -> dict[str, Any]:
        reason = self.assignment.reason if self.assignment else None
        known = plant.reasons.get(reason) if reason else None
        return {
            "site": self.key.site,
            "line": self.line,
            "machine": self.key.machine,
            "start": _iso(self.stop.start_ms),
            "end": _iso(self.stop.end_ms),
            "seconds": self.stop.ms / 1000,
            "open": self.stop.open,
            "state": self.stop.main_state,
            "state_seconds": {k: v / 1000 for k, v in self.stop.state_ms.items()},
            "shift": f"{self.run.day.isoformat()} {self.run.shift}",
            "reason": reason,
            "label": known.label if known else None,
            "category": known.category if known else None,
            "by": self.assignment.by if self.assignment else None,
            "at": _iso(to_epoch_ms(self.assignment.at)) if self.assignment else None,
            "note": self.assignment.note if self.assignment else None,
        }


def listed_stops(floors: Iterable[MachineFloor], store: DowntimeStore) -> list[ListedStop]:
    """The stops of ``floors`` with their reasons, by time."""
    floors = list(floors)
    given = store.assignments([f.key for f in floors])
    out = [
        ListedStop(f.key, f.line, run, stop, given.get((f.key, stop.start_ms)))
        for f in floors
        for run, stop in f.stops
    ]
    return sorted(out, key=lambda s: (s.stop.start_ms, s.key))


@dataclass(frozen=True)
class ParetoRow:
    """One reason's stops (``reason`` None: unassigned)."""

    reason: str | None
    label: str
    category: str
    ms: int
    count: int


def pareto(stops: Sequence[ListedStop], plant: Plant) -> list[ParetoRow]:
    """Stop time per reason, longest first (unassigned last among equals): its rows add up
    exactly to the stops' time."""
    sums: dict[str | None, tuple[int, int]] = {}
    for item in stops:
        reason = item.assignment.reason if item.assignment else None
        ms, count = sums.get(reason, (0, 0))
        sums[reason] = (ms + item.stop.ms, count + 1)
    rows = []
    for reason, (ms, count) in sums.items():
        known = plant.reasons.get(reason) if reason else None
        label = known.label if known else ("no reason given" if reason is None else reason)
        category = known.category if known else (UNASSIGNED if reason is None else "unknown")
        rows.append(ParetoRow(reason, label, category, ms, count))
    return sorted(rows, key=lambda r: (-r.ms, r.reason is None, r.reason or ""))
