"""Modbus TCP source: poll a register map (``edge/modbus_map.py``) into samples.

Each poll reads the map in as few requests as it allows (``plan_reads``), from one or more
unit ids behind the same gateway, and makes one sample: state, values, and the hour meter
as the ``run_seconds_total`` counter (rollovers counted). Any failed request makes that
poll's sample missing — a value is never guessed or repeated. An unreachable device is
retried with backoff; each outage is logged once when it starts and once when it ends.
pymodbus is pinned exactly (its client API changes between minor releases).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

from pymodbus.client import AsyncModbusTcpClient
from pymodbus.exceptions import ModbusException

from common.aio import raise_if_cancelled
from common.errors import RunhoursError
from edge.buffer import SampleBuffer
from edge.modbus_map import (
    ModbusSource,
    Read,
    decode,
    unwrap,
)
from edge.outage import Outage
from edge.readings import EdgeReading
from wire import Sample, State, from_epoch_ms

log = logging.getLogger("runhours.edge.modbus")

COUNTER = "run_seconds_total"


@dataclass
class PollStats:
    """What a polling source did: polls tried, samples made, samples missing (a failed read
    or an unreachable device), readings skipped (the device clock did not move), outages."""

    polls: int = 0
    samples: int = 0
    missing: int = 0
    stale: int = 0
    outages: int = 0
    connects: int = 0


class ReadFailed(RunhoursError):
    """One request failed (no answer, an exception response, a lost connection)."""


class ModbusPoller:
    """Polls one register map; ``readings()`` yields one reading per successful poll."""

    def __init__(
        self,
        options: ModbusSource,
        *,
        meter_state: tuple[int | None, int] = (None, 0),
        clock_ms: Callable[[], int] = lambda: time.time_ns() // 1_000_000,
    ) -> None:
        self.options = options
        self.stats = PollStats()
        self.reads = options.reads()
        self._clock_ms = clock_ms
        # The hour meter: the last raw value read and the rollovers counted so far.
        self.meter_last, self.meter_wraps = meter_state
        self._last_ts: int | None = None
        self._client: AsyncModbusTcpClient | None = None
        self._outage = Outage()
        self._unnamed: set[int] = set()

    @property
    def where(self) -> str:
        return f"modbus://{self.options.host}:{self.options.port}"

    async def readings(self) -> AsyncIterator[list[EdgeReading]]:
        """Poll every ``poll_interval`` until cancelled (the next poll is due on the grid, so
        slow requests do not make the rhythm drift)."""
        interval = self.options.poll_interval
        next_at = time.monotonic()
        try:
            while True:
                reading = await self.poll()
                raise_if_cancelled()  # pymodbus waits with asyncio.wait_for: see common.aio
                if reading is not None:
                    yield [reading]
                next_at += interval
                delay = next_at - time.monotonic()
                if delay < 0:  # late (a reconnect wait): skip the missed slots, no burst
                    next_at = time.monotonic()
                    delay = 0
                await asyncio.sleep(delay)
        finally:
            self.close()

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    async def poll(self) -> EdgeReading | None:
        """One poll: a reading, or None (missing: counted, and logged once per outage)."""
        self.stats.polls += 1
        started_ms = self._clock_ms()
        try:
            client = await self._connected()
            registers = [(read, await self._read(client, read)) for read in self.reads]
        except ReadFailed as exc:
            self._failed(str(exc))
            return None
        self._recovered()
        reading = self._reading(registers, started_ms)
        if reading is not None:
            self.stats.samples += 1
        return reading

    # -- connection ------------------------------------------------------------------------

    async def _connected(self) -> AsyncModbusTcpClient:
        if self._client is not None and self._client.connected:
            return self._client
        self.close()
        if self._outage.down:
            await self._backoff()
        opts = self.options
        # reconnect_delay=0: pymodbus does not reconnect on its own; we do, with backoff.
        client = AsyncModbusTcpClient(
            opts.host, port=opts.port, timeout=opts.timeout, retries=0, reconnect_delay=0
        )
        try:
            async with asyncio.timeout(opts.timeout + 1):  # not wait_for: see common.aio
                ok = await client.connect()
        except (TimeoutError, OSError, ModbusException) as exc:
            client.close()
            raise ReadFailed(f"cannot connect: {exc or type(exc).__name__}") from None
        if not ok:
            client.close()
            raise ReadFailed("cannot connect (refused or no answer)")
        self.stats.connects += 1
        self._client = client
        return client

    async def _backoff(self) -> None:
        opts = self.options
        await asyncio.sleep(self._outage.delay(opts.reconnect_min, opts.reconnect_max))

    async def _read(self, client: AsyncModbusTcpClient, read: Read) -> list[int]:
        call: Any = {
            "holding": client.read_holding_registers,
            "input": client.read_input_registers,
            "coil": client.read_coils,
            "discrete": client.read_discrete_inputs,
        }[read.table]
        what = f"{read.table} {read.start}+{read.count} of unit {read.unit}"
        try:
            async with asyncio.timeout(self.options.timeout + 1):
                response = await call(read.start, count=read.count, device_id=read.unit)
        except (TimeoutError, OSError, ModbusException) as exc:
            self.close()  # a lost or confused connection: start a fresh one
            raise ReadFailed(f"reading {what}: {exc or type(exc).__name__}") from None
        if response.isError():
            raise ReadFailed(f"reading {what}: the device answered {response}")
        if read.table in ("coil", "discrete"):
            return [1 if bit else 0 for bit in response.bits[: read.count]]
        return list(response.registers)

    def _failed(self, why: str) -> None:
        self.stats.missing += 1
        if self._outage.failed():
            self.stats.outages += 1
            log.warning(
                "%s: %s; samples are missing until it answers (retrying every %g-%g s)",
                self.where,
                why,
                self.options.reconnect_min,
                self.options.reconnect_max,
            )

    def _recovered(self) -> None:
        missed = self._outage.failures
        lasted = self._outage.recovered()
        if lasted is not None:
            log.warning(
                "%s: answers again after %.1f s (%d samples missing)", self.where, lasted, missed
            )

    # -- decoding -------------------------------------------------------------------------

    def _reading(
        self, registers: list[tuple[Read, list[int]]], started_ms: int
    ) -> EdgeReading | None:
        numbers: dict[str, float] = {}
        opts = self.options
        for read, words in registers:
            for f in read.fields:
                at = f.address - read.start
                e = f.entry
                numbers[f.what] = decode(
                    words[at : at + f.width], e.type, e.byte_order, e.word_order
                )
        ts_ms = started_ms
        if opts.timestamp is not None:
            ts_ms = round(numbers["timestamp"] * opts.timestamp.scale * 1000)
            if self._last_ts is not None and ts_ms <= self._last_ts:
                self.stats.stale += 1  # the device has no newer reading yet
                return None
        values = {
            v.name: numbers[f"values[{i}] ({v.name})"] * v.scale + v.offset
            for i, v in enumerate(opts.values)
        }
        state: State | None = None
        if opts.state is not None:
            raw = int(numbers["state"])
            state = opts.state.map.get(raw)
            if state is None and raw not in self._unnamed:
                self._unnamed.add(raw)
                log.warning(
                    "%s: the state register holds %d, which state.map does not name; "
                    "samples with it carry no state",
                    self.where,
                    raw,
                )
        counters: dict[str, float] = {}
        if opts.hour_meter is not None:
            meter = opts.hour_meter
            raw_meter = int(numbers["hour_meter"])
            self.meter_wraps = unwrap(raw_meter, self.meter_last, self.meter_wraps, meter.modulus)
            self.meter_last = raw_meter
            counters[COUNTER] = (raw_meter + self.meter_wraps * meter.modulus) * meter.scale
        if state is None and not values:
            return None
        self._last_ts = ts_ms
        sample = Sample(ts=from_epoch_ms(ts_ms), state=state, values=values)
        return EdgeReading(sample, counters)


async def modbus_source(
    options: ModbusSource, buffer: SampleBuffer, poller: ModbusPoller | None = None
) -> AsyncIterator[list[EdgeReading]]:
    """Poll ``options``' device; the hour meter's rollover count lives in ``buffer`` across
    restarts (kept whenever it changes, and at the end)."""
    if poller is None:
        last, wraps = buffer.source_state("meter_last"), buffer.source_state("meter_wraps")
        poller = ModbusPoller(options, meter_state=(last, wraps or 0))
    kept = poller.meter_wraps
    try:
        async for readings in poller.readings():
            if poller.meter_wraps != kept:
                kept = poller.meter_wraps
                _keep_meter(buffer, poller)
            yield readings
    finally:
        with contextlib.suppress(Exception):  # a closed or failing buffer says so itself
            _keep_meter(buffer, poller)


def _keep_meter(buffer: SampleBuffer, poller: ModbusPoller) -> None:
    if poller.meter_last is not None:
        buffer.keep_source_state(
            {"meter_last": poller.meter_last, "meter_wraps": poller.meter_wraps}
        )
