"""A simulated fleet that runs live: each machine always shows its latest reading.

``runhours simulate --serve modbus|opcua`` puts a protocol server in front of it: the
servers read ``LiveFleet.latest`` (Modbus registers) or are told of every new reading
(OPC UA variables), like the controller of a real machine, whose registers hold its latest
measurement. ``run`` steps the simulators along a ``SimClock``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime, timedelta

from simulators.clock import SimClock
from simulators.machine import MachineSim, Reading
from simulators.spec import MachineSpec
from simulators.truth import GroundTruth

OnReadings = Callable[[int, list[Reading]], Awaitable[None]]  # machine index, new readings


class LiveFleet:
    """Machines stepping along one clock; ``latest[i]`` is machine i's newest reading."""

    def __init__(
        self,
        specs: Sequence[MachineSpec],
        start: datetime,
        *,
        speed: float,
        sample_interval_s: float = 10.0,
        tick_s: float = 0.05,
    ) -> None:
        if not speed > 0:
            raise ValueError(f"a live fleet runs paced: speed must be > 0, got {speed}")
        self.specs = list(specs)
        self.sims = [MachineSim(s, start, sample_interval_s=sample_interval_s) for s in specs]
        self.clock = SimClock(start, speed)
        self.latest: list[Reading | None] = [None] * len(self.sims)
        self.produced = [0] * len(self.sims)
        self.shown = [0] * len(self.sims)  # readings that were the latest at some tick
        # A tick is at most one sample interval of simulated time, so every reading is shown
        # unless the machine is too busy to keep up.
        self.tick_s = min(tick_s, sample_interval_s / speed)
        self.reached = start

    def step(self, until: datetime) -> list[tuple[int, list[Reading]]]:
        """Advance every machine to ``until`` (synchronously: a server sees whole readings);
        the new readings per machine."""
        new: list[tuple[int, list[Reading]]] = []
        for index, sim in enumerate(self.sims):
            readings = sim.advance(until)
            if readings:
                self.produced[index] += len(readings)
                self.shown[index] += 1
                self.latest[index] = readings[-1]
                new.append((index, readings))
        self.reached = max(self.reached, until)
        return new

    async def run(
        self, until: datetime | None = None, on_readings: OnReadings | None = None
    ) -> None:
        """Step along the clock until ``until`` (or until cancelled)."""
        while until is None or self.reached < until:
            now = self.clock.now()
            target = now if until is None else min(now, until)
            for index, readings in self.step(target + timedelta(milliseconds=1)):
                if on_readings is not None:
                    await on_readings(index, readings)
            await asyncio.sleep(self.tick_s)

    @property
    def truth(self) -> list[GroundTruth]:
        return [sim.truth for sim in self.sims]
