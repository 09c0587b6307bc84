"""The simulated fleet: N machine simulators feeding N in-process edge agents on one loop.

``run_fleet`` steps one ``SimClock`` (real time, a speed factor, or as fast as possible),
hands each machine's new readings to its own ``EdgeAgent`` (one MQTT client each, one
buffer file each), then drains the agents and writes the ground truth. At full speed the
simulation pauses while any buffer holds ``high_water`` samples or more (fewer per agent in
a large fleet: about ``FLEET_HIGH_WATER`` in all), so memory and disk stay bounded however
fast the simulators are; within a step it hands the loop back every ``YIELD_S``, so the
agents keep publishing and answering the broker while thousands of machines are stepped.
Fleets too large for one process are split by ``runhours.fleet_workers``. With ``live``, a
simulation that reaches ``end`` (now) goes on in real time until stopped: the plant keeps
running.

``simulator_source`` is the same stepping for a single agent (``runhours edge`` with
``[edge.source] type = "simulator"``).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
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

from analytics.machines import MachineKey
from analytics.plant import Plant
from common.aio import wait_event
from common.errors import RunhoursError
from edge import EdgeAgent, Reading
from edge.config import EdgeSettings
from edge.mqtt import Broker
from simulators import MachineSim, MachineSpec, SimClock, write_ground_truth
from wire import MachineRef

log = logging.getLogger("runhours.fleet")

HIGH_WATER = 5000  # buffered samples per agent before the simulation pauses
FLEET_HIGH_WATER = 1_000_000  # … and in all: a large fleet pauses at fewer per agent
YIELD_S = 0.02  # longest stretch of stepping simulators without handing the loop back
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
class Resources:
    """What simulating cost: processes, the sum of their peak RSS, and their CPU time."""

    processes: int
    peak_rss_bytes: int
    cpu_seconds: float


@dataclass(frozen=True)
class FleetProgress:
    """Where a running fleet stands (what the progress display and worker processes show)."""

    machines: int
    connected: int
    simulated_s: float
    produced: int
    published: int


@dataclass(frozen=True)
class FleetRun:
    """What ``run_fleet`` did."""

    machines: list[MachineRun]
    start: datetime
    end: datetime  # simulated time reached (earlier than asked when interrupted)
    wall_seconds: float
    ground_truth: Path | None
    interrupted: bool
    resources: Resources | None = None  # measured by ``runhours.fleet_workers``

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


def follow_plant(specs: Sequence[MachineSpec], plant: Plant) -> list[MachineSpec]:
    """The specs working their site's schedules, with the plant file's ideal cycles (a
    machine the plant file says nothing about keeps its own)."""
    out = []
    for spec in specs:
        plan = plant.plan(MachineKey(spec.site, spec.machine))
        out.append(
            dataclasses.replace(
                spec,
                calendar=plan.schedule or spec.calendar,
                ideal_cycle_s=plan.ideal_cycle_s or spec.ideal_cycle_s,
            )
        )
    return out


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
    report: Callable[[FleetProgress], None] | None = None,
    ready: Callable[[], Awaitable[None]] | None = None,
    live: bool = False,
    caught_up: Callable[[FleetRun], None] | None = None,
) -> FleetRun:
    """Simulate ``specs`` from ``start`` to ``end`` through one edge agent per machine.

    Every agent uses ``settings.broker``, or its machine's own identity from
    ``broker_for`` (``runhours.security.credentials.machine_broker``).

    Buffers live under ``<data_dir>/edge/``; samples an earlier, interrupted simulation left
    there are discarded (counted as dropped) so the figures describe this run alone. Raises
    ``FleetError`` when the agents cannot reach the broker within ``connect_timeout``.
    Setting ``stop`` ends the simulation early; what was produced is still drained, until
    every sample is acknowledged or none was for ``drain_timeout`` seconds. ``report`` is
    called with the progress (at least every step, every 0.2 s while connecting and
    draining); ``ready`` is awaited once every agent is connected, before the simulated
    clock starts (worker processes start together).

    ``live``: once ``end`` is reached and every agent has published what it holds, the
    ground truth so far is written and ``caught_up`` gets the figures of that first phase;
    then the simulation follows the wall clock (``end`` should be about now) until
    ``stop`` is set.
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
    # A large fleet pauses at fewer samples per agent: about FLEET_HIGH_WATER in all.
    limit = max(1, min(high_water, FLEET_HIGH_WATER // max(1, len(specs))))
    try:
        _open_agents(agents, settings, specs, broker_for)
        with FleetDisplay(progress, (end - start).total_seconds(), len(agents)) as bar:

            def show() -> None:
                now = FleetProgress(
                    len(agents),
                    sum(a.connected for a in agents),
                    (reached - start).total_seconds(),
                    sum(produced),
                    _published(agents),
                )
                bar.update(now)
                if report is not None:
                    report(now)

            runs = [asyncio.create_task(agent.run()) for agent in agents]
            connecting: asyncio.Future[list[bool]] = asyncio.gather(
                *(a.wait_connected(connect_timeout) for a in agents)
            )
            await _while_pending(connecting, show)
            if not all(connecting.result()):
                raise _unreachable(agents, settings.broker.url, connect_timeout)
            show()
            if ready is not None:
                await ready()
            clock = SimClock(start, speed)
            step = step_for(speed)
            t = start
            while t < end and not stop.is_set():
                t = min(t + step, end)
                await clock.sleep_until(t)
                handed_back = time.monotonic()
                for i, (sim, agent) in enumerate(zip(sims, agents, strict=True)):
                    produced[i] += agent.submit(sim.advance(t))
                    if time.monotonic() - handed_back >= YIELD_S:
                        await asyncio.sleep(0)  # the agents publish and answer the broker
                        handed_back = time.monotonic()
                reached = t
                show()
                if any(a.buffer.count >= limit for a in agents):
                    await _all_below(agents, limit, stop)
            await _drain(agents, drain_timeout, show)
            show()
            if live and not stop.is_set():
                if ground_truth is not None:
                    _write_truth(ground_truth, sims)
                if caught_up is not None:
                    caught_up(
                        _figures(specs, produced, agents, start, reached, wall0, ground_truth)
                    )
                reached = await _follow_wall_clock(sims, agents, produced, reached, stop)
                await _drain(agents, drain_timeout, lambda: None)
        for agent in agents:
            agent.stop()
        await asyncio.gather(*runs)
        result = _figures(specs, produced, agents, start, reached, wall0, ground_truth)
    finally:
        for task in runs:
            task.cancel()
        await asyncio.gather(*runs, return_exceptions=True)
        for agent in agents:
            agent.buffer.close()
    if ground_truth is not None:
        _write_truth(ground_truth, sims)
    return replace(result, interrupted=reached < end)


def _open_agents(
    agents: list[EdgeAgent],
    settings: EdgeSettings,
    specs: Sequence[MachineSpec],
    broker_for: Callable[[MachineRef], Broker] | None,
) -> None:
    """An agent per machine, appended to ``agents`` one by one (so the caller closes the
    buffers opened so far if one fails); what an earlier run left is discarded."""
    for spec in specs:
        ref = MachineRef(spec.site, spec.line, spec.machine)
        buffer = settings.open_buffer(ref)
        if leftover := buffer.discard_all():
            log.warning("%s: discarded %d samples left by an earlier run", ref.machine, leftover)
        broker = broker_for(ref) if broker_for is not None else settings.broker
        agents.append(EdgeAgent(ref, buffer, broker, settings.edge.agent_options()))


def _unreachable(agents: Sequence[EdgeAgent], url: str, connect_timeout: float) -> FleetError:
    errors = {a.last_error for a in agents if not a.connected} - {None}
    down = sum(not a.connected for a in agents)
    return FleetError(
        f"{down} of {len(agents)} agents cannot reach the MQTT broker at "
        f"{url} within {connect_timeout:g} s "
        f"({'; '.join(sorted(e for e in errors if e)) or 'no answer'});"
        " is it running (`runhours services up`) and is RUNHOURS_MQTT_URL right?"
    )


async def _follow_wall_clock(
    sims: Sequence[MachineSim],
    agents: Sequence[EdgeAgent],
    produced: list[int],
    reached: datetime,
    stop: asyncio.Event,
) -> datetime:
    """Step the simulation with the wall clock from ``reached`` until ``stop`` is set; the
    simulated time reached."""
    t = reached
    step = step_for(1.0)
    while not stop.is_set():
        t += step
        delay = (t - datetime.now(UTC)).total_seconds()
        if delay > 0 and await wait_event(stop, delay):
            break
        await asyncio.sleep(0)  # catching up with the clock: let agents publish
        for i, (sim, agent) in enumerate(zip(sims, agents, strict=True)):
            produced[i] += agent.submit(sim.advance(t))
        reached = t
    return reached


def _figures(
    specs: Sequence[MachineSpec],
    produced: list[int],
    agents: Sequence[EdgeAgent],
    start: datetime,
    reached: datetime,
    wall0: float,
    ground_truth: Path | None,
) -> FleetRun:
    machines = [
        MachineRun(spec, n, a.stats.published, a.stats.dropped, a.stats.buffered)
        for spec, n, a in zip(specs, produced, agents, strict=True)
    ]
    return FleetRun(machines, start, reached, time.monotonic() - wall0, ground_truth, False)


def _write_truth(path: Path, sims: Sequence[MachineSim]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    write_ground_truth(path, [sim.truth for sim in sims])


async def _while_pending(future: asyncio.Future[Any], show: Callable[[], None]) -> None:
    """Wait for ``future``, showing the progress every 0.2 s meanwhile."""
    while not future.done():
        show()
        await asyncio.wait({future}, timeout=0.2)


async def _drain(
    agents: Sequence[EdgeAgent], stalled_after: float, show: Callable[[], None]
) -> None:
    """Wait until every agent's buffer is empty, or nothing was acknowledged for
    ``stalled_after`` seconds (a large fleet may take long to drain, and that is fine)."""
    drain: asyncio.Future[Any] = asyncio.gather(*(a.drain() for a in agents))
    loop = asyncio.get_running_loop()
    published, since = _published(agents), loop.time()
    try:
        while not drain.done() and loop.time() - since < stalled_after:
            show()
            await asyncio.wait({drain}, timeout=min(0.2, stalled_after))
            if (now := _published(agents)) != published:
                published, since = now, loop.time()
    finally:
        await _cancel(drain)


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


class FleetDisplay:
    """A rich progress display (agents connected, simulated hours, samples published), or
    nothing. Three lines however large the fleet."""

    def __init__(self, enabled: bool, total_seconds: float, machines: int) -> None:
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
        # Hours, or minutes for a run shorter than two hours.
        self._per, self._unit = (3600, "hours") if total_seconds >= 7200 else (60, "minutes")
        self._total = max(1, round(total_seconds / self._per))
        self._machines = machines
        self._con = self._sim = self._pub = TaskID(0)

    def __enter__(self) -> FleetDisplay:
        if self._bar is not None:
            self._bar.start()
            self._con = self._bar.add_task("connected", total=self._machines, unit="agents")
            self._sim = self._bar.add_task("simulated", total=self._total, unit=self._unit)
            self._pub = self._bar.add_task("published", total=0, unit="samples")
        return self

    def __exit__(self, *exc: object) -> None:
        if self._bar is not None:
            self._bar.stop()

    def update(self, now: FleetProgress) -> None:
        if self._bar is not None:
            self._bar.update(self._con, completed=now.connected)
            done = min(self._total, round(now.simulated_s / self._per))
            self._bar.update(self._sim, completed=done)
            self._bar.update(self._pub, total=now.produced, completed=now.published)
