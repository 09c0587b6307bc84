"""Where an agent's readings come from, and how they reach it.

A source is an async iterator of reading lists (``AsyncIterator[Sequence[Reading]]``);
``feed`` hands them to an agent with backpressure. The edge's own source is a CSV replay;
the simulator source is wired in ``runhours`` (edge may import only ``contract``).

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
from pathlib import Path

from pydantic import ValidationError

from contract import STATES, Sample
from contract.payloads import VALUE_NAME
from edge.agent import EdgeAgent
from edge.readings import EdgeReading, Reading

COUNTER_COLUMNS = frozenset({"run_seconds_total", "parts_total", "parts_good_total"})
CHUNK = 500  # readings per hand-over at full speed


class SourceError(ValueError):
    """A source cannot be read; the message names the file, line and column."""


def read_csv(path: Path, *, after_ts_ms: int | None = None) -> Iterator[EdgeReading]:
    """Parse a CSV replay file lazily; rows with ``ts <= after_ts_ms`` are skipped (resume)."""
    try:
        handle = path.open(newline="", encoding="utf-8")
    except OSError as exc:
        raise SourceError(f"{path}: cannot open the CSV source: {exc.strerror}") from None
    with handle:
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
    path: Path, *, speed: float | None = None, after_ts_ms: int | None = None
) -> AsyncIterator[list[EdgeReading]]:
    """Replay a CSV file: at full speed (``speed=None``) in chunks, or paced at ``speed`` ×
    the original pace (the first replayed row is due at once)."""
    rows = read_csv(path, after_ts_ms=after_ts_ms)
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
