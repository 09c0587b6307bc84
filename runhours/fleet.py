"""The simulated fleet: N machine simulators feeding N in-process edge agents on one loop.

``run_fleet`` steps one ``SimClock`` (real time, a speed factor, or as fast as possible),
hands each machine's new readings to its own ``EdgeAgent`` (one MQTT client each, one
buffer file each), then drains the agents and writes the ground truth. At full speed the
simulation pauses while any buffer holds ``high_water`` samples or more, so memory and
disk stay bounded however fast the simulators are.

``simulator_source`` is the same stepping for a single agent (``runhours edge`` with
``[edge.source] type = "simulator"``).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)

from contract import MachineRef
from contract.errors import RunhoursError
from edge import EdgeAgent, Reading
from edge.config import EdgeSettings
from edge.mqtt import Broker
from simulators import MachineSim, MachineSpec, SimClock, write_ground_truth

log = logging.getLogger("runhours.fleet")

HIGH_WATER = 5000  # buffered samples per agent before the simulation pauses
MAX_STEP = timedelta(hours=1)  # simulated time per step at full speed
PACED_STEP_WALL_S = 0.5  # wall time per step when paced


class FleetError(RunhoursError, RuntimeError):
    """The fleet could not run (e.g. the broker is unreachable)."""


@dataclass(frozen=True)
class MachineRun:
    """One machine's figures: samples the simulator produced, the broker acknowledged, the
    buffer dropped, and still buffered at the end (0 when drained)."""

    spec: MachineSpec
    produced: int
    published: int
    dropped: int
    buffered: int


@dataclass(frozen=True)
class FleetRun:
    """What ``run_fleet`` did."""

    machines: list[MachineRun]
    start: datetime
    end: datetime  # simulated time reached (earlier than asked when interrupted)
    wall_seconds: float
    ground_truth: Path | None
    interrupted: bool

    @property
    def produced(self) -> int:
        return sum(m.produced for m in self.machines)

    @property
    def published(self) -> int:
        return sum(m.published for m in self.machines)

    @property
    def buffered(self) -> int:
        return sum(m.buffered for m in self.machines)

    @property
    def dropped(self) -> int:
        return sum(m.dropped for m in self.machines)


def step_for(speed: float | None) -> timedelta:
    """Simulated time per step: an hour at full speed, about half a wall second when paced."""
    if speed is None:
        return MAX_STEP
    return min(MAX_STEP, max(timedelta(seconds=0.1), timedelta(seconds=speed * PACED_STEP_WALL_S)))


async def simulator_source(
    sim: MachineSim, clock: SimClock, *, until: datetime | None = None
) -> AsyncIterator[list[Reading]]:
    """Step one simulator along ``clock`` (until ``until``, or forever)."""
    step = step_for(clock.speed)
    t = sim.start
    while until is None or t < until:
        t = t + step if until is None else min(t + step, until)
        await clock.sleep_until(t)
        readings: list[Reading] = list(sim.advance(t))
        if readings:
            yield readings


async def run_fleet(
    settings: EdgeSettings,
    specs: Sequence[MachineSpec],
    *,
    start: datetime,
    end: datetime,
    speed: float | None,
    sample_interval_s: float = 10.0,
    ground_truth: Path | None = None,
    progress: bool = False,
    high_water: int = HIGH_WATER,
    connect_timeout: float = 30.0,
    drain_timeout: float = 300.0,
    stop: asyncio.Event | None = None,
    broker_for: Callable[[MachineRef], Broker] | None = None,
) -> FleetRun:
    """Simulate ``specs`` from ``start`` to ``end`` through one edge agent per machine.

    Every agent uses ``settings.broker``, or its machine's own identity from
    ``broker_for`` (``runhours.security.credentials.machine_broker``).

    Buffers live under ``<data_dir>/edge/``; samples an earlier, interrupted simulation left
    there are discarded (counted as dropped) so the figures describe this run alone. Raises
    ``FleetError`` when the agents cannot reach the broker within ``connect_timeout``.
    Setting ``stop`` ends the simulation early; what was produced is still drained.
    """
    if not start < end:
        raise ValueError(f"end ({end.isoformat()}) must be after start ({start.isoformat()})")
    stop = stop or asyncio.Event()
    wall0 = time.monotonic()
    sims = [MachineSim(spec, start, sample_interval_s=sample_interval_s) for spec in specs]
    agents: list[EdgeAgent] = []
    runs: list[asyncio.Task[None]] = []
    produced = [0] * len(sims)
    reached = start
    try:
        for spec in specs:
            ref = MachineRef(spec.site, spec.line, spec.machine)
            buffer = settings.open_buffer(ref)
            if leftover := buffer.discard_all():
                log.warning(
                    "%s: discarded %d samples left by an earlier run", ref.machine, leftover
                )
            broker = broker_for(ref) if broker_for is not None else settings.broker
            agents.append(EdgeAgent(ref, buffer, broker, settings.edge.agent_options()))
        runs = [asyncio.create_task(agent.run()) for agent in agents]
        connected = await asyncio.gather(*(a.wait_connected(connect_timeout) for a in agents))
        if not all(connected):
            errors = {a.last_error for a in agents if not a.connected} - {None}
            raise FleetError(
                f"cannot reach the MQTT broker at {settings.broker.url} within "
                f"{connect_timeout:g} s ({'; '.join(sorted(e for e in errors if e)) or 'no answer'});"
                " is it running (`runhours services up`) and is RUNHOURS_MQTT_URL right?"
            )
        clock = SimClock(start, speed)
        step = step_for(speed)
        with _Progress(progress, (end - start).total_seconds()) as bar:
            t = start
            while t < end and not stop.is_set():
                t = min(t + step, end)
                await clock.sleep_until(t)
                for i, (sim, agent) in enumerate(zip(sims, agents, strict=True)):
                    produced[i] += agent.submit(sim.advance(t))
                reached = t
                bar.update((t - start).total_seconds(), sum(produced), _published(agents))
                if any(a.buffer.count >= high_water for a in agents):
                    await _all_below(agents, high_water, stop)
            drain: asyncio.Future[Any] = asyncio.gather(*(a.drain(drain_timeout) for a in agents))
            try:
                while not drain.done():
                    bar.update((reached - start).total_seconds(), sum(produced), _published(agents))
                    await asyncio.wait({drain}, timeout=0.2)
            finally:
                await _cancel(drain)
            bar.update((reached - start).total_seconds(), sum(produced), _published(agents))
        for agent in agents:
            agent.stop()
        await asyncio.gather(*runs)
        machines = [
            MachineRun(spec, n, a.stats.published, a.stats.dropped, a.stats.buffered)
            for spec, n, a in zip(specs, produced, agents, strict=True)
        ]
    finally:
        for task in runs:
            task.cancel()
        await asyncio.gather(*runs, return_exceptions=True)
        for agent in agents:
            agent.buffer.close()
    if ground_truth is not None:
        ground_truth.parent.mkdir(parents=True, exist_ok=True)
        write_ground_truth(ground_truth, [sim.truth for sim in sims])
    return FleetRun(machines, start, reached, time.monotonic() - wall0, ground_truth, reached < end)


def _published(agents: Sequence[EdgeAgent]) -> int:
    return sum(a.stats.published for a in agents)


async def _all_below(agents: Sequence[EdgeAgent], limit: int, stop: asyncio.Event) -> None:
    """Backpressure: wait until every buffer holds fewer than ``limit`` samples, or ``stop``."""
    waits: list[asyncio.Future[Any]] = [
        asyncio.ensure_future(a.wait_buffered_below(limit)) for a in agents
    ]
    stopped: asyncio.Future[Any] = asyncio.ensure_future(stop.wait())
    everything: asyncio.Future[Any] = asyncio.gather(*waits)
    try:
        await asyncio.wait([everything, stopped], return_when=asyncio.FIRST_COMPLETED)
    finally:
        await _cancel(everything, stopped)


async def _cancel(*futures: asyncio.Future[Any]) -> None:
    """Cancel helper futures and collect their outcome (no "never retrieved" noise)."""
    for future in futures:
        future.cancel()
    await asyncio.gather(*futures, return_exceptions=True)


class _Progress:
    """A rich progress display (simulated hours, samples published), or nothing."""

    def __init__(self, enabled: bool, total_seconds: float) -> None:
        self._bar = (
            Progress(
                TextColumn("{task.description:<10}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[unit]}"),
                TimeElapsedColumn(),
            )
            if enabled
            else None
        )
        self._total_h = max(1, round(total_seconds / 3600))
        self._sim = self._pub = TaskID(0)

    def __enter__(self) -> _Progress:
        if self._bar is not None:
            self._bar.start()
            self._sim = self._bar.add_task("simulated", total=self._total_h, unit="hours")
            self._pub = self._bar.add_task("published", total=0, unit="samples")
        return self

    def __exit__(self, *exc: object) -> None:
        if self._bar is not None:
            self._bar.stop()

    def update(self, simulated_s: float, produced: int, published: int) -> None:
        if self._bar is not None:
            self._bar.update(self._sim, completed=min(self._total_h, round(simulated_s / 3600)))
            self._bar.update(self._pub, total=produced, completed=published)
