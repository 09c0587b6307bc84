"""Where an agent's readings come from, and how they reach it.

A source is an async iterator of reading lists (``AsyncIterator[Sequence[Reading]]``);
``feed`` hands them to an agent with backpressure. The edge's own source is a CSV replay;
the simulator source is wired in ``runhours`` (edge may import only ``common`` and ``wire``).

CSV replay format (a header row, then one sample per row, ordered by strictly increasing
``ts``)::

    ts,state,vibration_mm_s,bearing_temp_c,run_seconds_total
    2026-03-02T08:00:00+01:00,running,1.9,41.5,3600
    1772434810000,idle,0.4,,3610

- ``ts`` (first column): RFC 3339 with a zone, or integer epoch milliseconds.
- ``state`` (second column): ``off``, ``idle``, ``running``, ``fault``, ``maintenance``, or
  empty for a sample that only carries values.
- then one column per value, named with its unit suffix (``[a-z][a-z0-9_]{0,63}``); an
  empty cell means "no value in this sample".
- ``run_seconds_total`` (optional, any position after ``state``): the machine's hour meter;
  it travels as a counter, not as a value; so do ``parts_total`` and ``parts_good_total``,
  the part counters of a machine that makes parts (docs/oee.md).
"""

from __future__ import annotations

import asyncio
import csv
import time
from collections.abc import AsyncIterator, Iterator, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any, TextIO

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from common.errors import RunhoursError
from edge.agent import EdgeAgent
from edge.readings import EdgeReading, Reading
from wire import STATES, Sample, State, to_epoch_ms
from wire.payloads import VALUE_NAME

COUNTER_COLUMNS = frozenset({"run_seconds_total", "parts_total", "parts_good_total"})
CHUNK = 500  # readings per hand-over at full speed


class SourceError(RunhoursError, ValueError):
    """A source cannot be read; the message names the file, line and column."""


class ColumnState(BaseModel):
    """``[edge.source.columns.state]``: the state from one column, by a map of its texts or
    by a threshold on its magnitude (a spindle that turns is running)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    column: str
    map: dict[str, State] = {}  # cell text → state
    running_above: float | None = None  # |number| above it: running …
    otherwise: State = "idle"  # … else this

    @model_validator(mode="after")
    def _one_way(self) -> ColumnState:
        if bool(self.map) == (self.running_above is not None):
            raise ValueError("give either map or running_above")
        return self


class CsvColumns(BaseModel):
    """``[edge.source.columns]``: read a recorded file with its own column names (e.g. a
    machine's data logger export): which column is what. Without a time column the rows
    are ``interval`` seconds apart from ``start``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    time: str | None = None  # a column with RFC 3339 times (with zone) or epoch ms
    start: datetime | None = None  # … or: the first row's time
    interval: float | None = Field(default=None, gt=0)  # … and seconds between rows
    values: dict[str, str]  # value name → column
    state: ColumnState | None = None
    hour_meter: str | None = None  # a column of running seconds → run_seconds_total

    @field_validator("values")
    @classmethod
    def _names(cls, values: dict[str, str]) -> dict[str, str]:
        for name in values:
            if not VALUE_NAME.fullmatch(name):
                raise ValueError(f"{name!r} is not a value name ([a-z][a-z0-9_]{{0,63}})")
        return values

    @model_validator(mode="after")
    def _clock(self) -> CsvColumns:
        if (self.time is None) == (self.start is None or self.interval is None):
            raise ValueError("give either time (a column) or start and interval")
        if self.start is not None and self.start.tzinfo is None:
            raise ValueError("start needs a time zone (e.g. 2018-04-01T09:00:00Z)")
        return self


def _open_csv(path: Path, encoding: str) -> TextIO:
    try:
        return path.open(newline="", encoding=encoding)
    except OSError as exc:
        raise SourceError(f"{path}: cannot open the CSV source: {exc.strerror}") from None


def read_mapped_csv(
    path: Path, columns: CsvColumns, *, after_ts_ms: int | None = None
) -> Iterator[EdgeReading]:
    """Read a recorded file through ``columns``; rows with ``ts <= after_ts_ms`` are skipped.
    An empty cell is no value; a cell that is not a number is an error naming it."""
    with _open_csv(path, "utf-8-sig") as handle:
        reader = csv.DictReader(handle)
        wanted = [*columns.values.values(), columns.time, columns.hour_meter]
        wanted.append(columns.state.column if columns.state is not None else None)
        missing = sorted({c for c in wanted if c is not None} - set(reader.fieldnames or []))
        if missing:
            raise SourceError(f"{path}:1: no column {', '.join(map(repr, missing))}")
        start_ms = None if columns.start is None else to_epoch_ms(columns.start)
        step_ms = None if columns.interval is None else round(columns.interval * 1000)
        previous: int | None = None
        for index, row in enumerate(reader):
            line = index + 2
            if start_ms is not None and step_ms is not None:
                ts: Any = start_ms + index * step_ms
            else:
                raw = (row[columns.time or ""] or "").strip()
                ts = int(raw) if raw.isdigit() else raw
            values = {name: _number(path, line, column, row[column])
                      for name, column in columns.values.items() if (row[column] or "").strip()}  # fmt: skip
            state = _state(path, line, columns.state, row) if columns.state else None
            counters = {}
            if columns.hour_meter and (row[columns.hour_meter] or "").strip():
                counters["run_seconds_total"] = _number(
                    path, line, columns.hour_meter, row[columns.hour_meter]
                )
            if state is None and not values:
                continue
            try:
                sample = Sample.model_validate({"ts": ts, "state": state, "values": values})
            except ValidationError as exc:
                raise SourceError(f"{path}:{line}: {exc.errors()[0]['msg']}") from None
            if previous is not None and sample.ts_ms <= previous:
                raise SourceError(f"{path}:{line}: time must increase strictly")
            previous = sample.ts_ms
            if after_ts_ms is None or sample.ts_ms > after_ts_ms:
                yield EdgeReading(sample, counters)


def _number(path: Path, line: int, column: str, cell: str | None) -> float:
    try:
        return float((cell or "").strip())
    except ValueError:
        raise SourceError(f"{path}:{line}: column {column}: {cell!r} is not a number") from None


def _state(path: Path, line: int, rule: ColumnState, row: dict[str, str]) -> State | None:
    cell = (row[rule.column] or "").strip()
    if not cell:
        return None
    if rule.map:
        if cell not in rule.map:
            raise SourceError(f"{path}:{line}: column {rule.column}: {cell!r} is not in state.map")
        return rule.map[cell]
    assert rule.running_above is not None
    return "running" if abs(_number(path, line, rule.column, cell)) > rule.running_above else (
        rule.otherwise
    )  # fmt: skip


def read_csv(path: Path, *, after_ts_ms: int | None = None) -> Iterator[EdgeReading]:
    """Parse a CSV replay file lazily; rows with ``ts <= after_ts_ms`` are skipped (resume)."""
    with _open_csv(path, "utf-8") as handle:
        reader = csv.reader(handle)
        header = next(reader, None)
        if header is None:
            raise SourceError(f"{path}: empty file (expected a header: ts,state,<values>…)")
        names = [h.strip() for h in header]
        if names[:2] != ["ts", "state"]:
            raise SourceError(
                f"{path}:1: the header must start with 'ts,state', got {','.join(names[:2])!r}"
            )
        for name in names[2:]:
            if not VALUE_NAME.fullmatch(name):
                raise SourceError(
                    f"{path}:1: column {name!r} is not a value name "
                    "([a-z][a-z0-9_]{0,63}, with its unit as suffix, e.g. vibration_mm_s)"
                )
        previous: int | None = None
        for line, row in enumerate(reader, start=2):
            if not row or all(not cell.strip() for cell in row):
                continue
            reading = _parse_row(path, line, names, row)
            ts = reading.sample.ts_ms
            if previous is not None and ts <= previous:
                raise SourceError(
                    f"{path}:{line}: ts must increase strictly (got {row[0]!r} after an "
                    "equal or later one)"
                )
            previous = ts
            if after_ts_ms is None or ts > after_ts_ms:
                yield reading


def _parse_row(path: Path, line: int, names: list[str], row: list[str]) -> EdgeReading:
    where = f"{path}:{line}"
    if len(row) != len(names):
        raise SourceError(f"{where}: {len(row)} cells, but the header has {len(names)} columns")
    raw_ts, state = row[0].strip(), row[1].strip()
    ts: int | str = int(raw_ts) if raw_ts.isdigit() else raw_ts
    if state and state not in STATES:
        raise SourceError(f"{where}: column state: {state!r} is not one of {', '.join(STATES)}")
    values: dict[str, float] = {}
    counters: dict[str, float] = {}
    for name, cell in zip(names[2:], row[2:], strict=True):
        cell = cell.strip()
        if not cell:
            continue
        try:
            number = float(cell)
        except ValueError:
            raise SourceError(f"{where}: column {name}: {cell!r} is not a number") from None
        (counters if name in COUNTER_COLUMNS else values)[name] = number
    try:
        sample = Sample.model_validate({"ts": ts, "state": state or None, "values": values})
    except ValidationError as exc:
        details = "; ".join(
            f"column {'.'.join(str(p) for p in e['loc'])}: {e['msg'].removeprefix('Value error, ')}"
            for e in exc.errors()
        )
        raise SourceError(f"{where}: {details}") from None
    return EdgeReading(sample, counters)


async def csv_source(
    path: Path,
    *,
    speed: float | None = None,
    after_ts_ms: int | None = None,
    columns: CsvColumns | None = None,
) -> AsyncIterator[list[EdgeReading]]:
    """Replay a CSV file: at full speed (``speed=None``) in chunks, or paced at ``speed`` ×
    the original pace (the first replayed row is due at once). ``columns``: a recorded file
    with its own column names."""
    rows = (
        read_csv(path, after_ts_ms=after_ts_ms)
        if columns is None
        else read_mapped_csv(path, columns, after_ts_ms=after_ts_ms)
    )
    if speed is None:
        chunk: list[EdgeReading] = []
        for reading in rows:
            chunk.append(reading)
            if len(chunk) >= CHUNK:
                yield chunk
                chunk = []
        if chunk:
            yield chunk
        return
    first_ts: int | None = None
    wall0 = time.monotonic()
    for reading in rows:
        ts = reading.sample.ts_ms
        if first_ts is None:
            first_ts = ts
        delay = wall0 + (ts - first_ts) / 1000 / speed - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        yield [reading]


async def feed(
    agent: EdgeAgent,
    source: AsyncIterator[Sequence[Reading]],
    *,
    high_water: int | None = 5000,
) -> int:
    """Submit everything a source yields. Returns samples fed.

    With ``high_water``, pause while the buffer holds that many samples or more, so a
    replay cannot run far ahead of publishing; ``None`` for a live source that must never
    wait (the buffer's bounds then decide what is kept).
    """
    total = 0
    async for readings in source:
        total += agent.submit(readings)
        if high_water is not None and agent.buffer.count >= high_water:
            await agent.wait_buffered_below(high_water)
    return total
