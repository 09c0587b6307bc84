"""A fleet too large for one process, split across worker processes.

Every simulated machine keeps its own edge agent, as in ``run_fleet``: its own MQTT
connection (client id, retained status and will, and in the secure mode its own broker
identity) and its own buffer file (``seq``, ``offset``, exact resends). What one process
cannot hold for thousands of machines is open files: three per agent (the socket, the
buffer and its write-ahead log; measured) against a limit of often 1,024. So
``plan_fleet`` splits the fleet into contiguous slices, as few as the limit allows, and
``run_fleet_workers`` runs ``run_fleet`` on each slice in a spawned process of its own
(its own event loop), starts their simulated clocks together once every agent is
connected, relays Ctrl-C, shows one progress display and adds their figures up, including
each process's peak RSS and CPU time (``Resources``).

``raise_open_files_limit`` lifts the soft limit to the hard one first (children inherit
it); when even that is too low, ``FleetTooLarge`` says what to change.

Each process caps SQLite's page caches (``limit_sqlite_heap``): every buffer may keep up to
2 MB of cached pages by default, 5 GB for 2,500 agents that each write an hour of samples.
What a machine costs otherwise (its simulator's pending one-hour block above all) is
measured by bench/fleet.py and listed in docs/performance.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import math
import multiprocessing
import resource
import signal
import sqlite3
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from multiprocessing.connection import Connection, wait
from multiprocessing.synchronize import Event
from pathlib import Path
from typing import Any

from edge.config import EdgeSettings
from edge.mqtt import Broker
from runhours.fleet import (
    FleetDisplay,
    FleetError,
    FleetProgress,
    FleetRun,
    Resources,
    run_fleet,
)
from simulators import MachineSpec, read_ground_truth, write_ground_truth
from wire import MachineRef

log = logging.getLogger("runhours.fleet")

FILES_PER_MACHINE = 3  # the MQTT socket, the buffer file and its WAL (measured)
FILES_PER_PROCESS = 100  # the interpreter, the event loop, its executor, logs (with room)
MACHINES_PER_PROCESS = 5000  # one event loop's share, whatever the limit allows
MAX_PROCESSES = 32
SQLITE_HEAP_BYTES = 64 * 1024 * 1024  # soft cap on SQLite's memory per process


class FleetTooLarge(FleetError):
    """The fleet does not fit the open-files limit (the message says what to change)."""


@dataclass(frozen=True)
class FleetPlan:
    """How a fleet is split: ``processes`` slices of at most ``per_process`` machines, each
    process allowed ``open_files`` descriptors (``hard_limit`` at most)."""

    machines: int
    processes: int
    open_files: int
    hard_limit: int

    @property
    def per_process(self) -> int:
        return math.ceil(self.machines / self.processes)

    @property
    def files_per_process(self) -> int:
        """Descriptors one process needs for its slice (estimate)."""
        return self.per_process * FILES_PER_MACHINE + FILES_PER_PROCESS

    def slices(self, specs: Sequence[MachineSpec]) -> list[list[MachineSpec]]:
        size = self.per_process
        return [list(specs[i : i + size]) for i in range(0, len(specs), size)]


def raise_open_files_limit() -> tuple[int, int]:
    """Raise this process's soft open-files limit to its hard limit (processes it starts
    inherit it). Returns ``(soft, hard)`` as they are now."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    # An unlimited hard limit still stops at the kernel's nr_open (1,048,576 by default).
    target = hard if hard != resource.RLIM_INFINITY else max(soft, 1_048_576)
    if soft != resource.RLIM_INFINITY and soft < target:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
    return soft, hard


def plan_fleet(
    machines: int, open_files: int, hard_limit: int, *, processes: int | None = None
) -> FleetPlan:
    """Split ``machines`` into as few processes as ``open_files`` descriptors each allow
    (and ``MACHINES_PER_PROCESS`` at most), or into ``processes`` if given and enough.

    Raises ``FleetTooLarge`` when that takes more than ``MAX_PROCESSES`` processes or the
    given ``processes`` are too few; the message names the limit and what to change."""
    if machines < 1:
        raise ValueError(f"a fleet needs at least one machine, got {machines}")
    fit = min(MACHINES_PER_PROCESS, (open_files - FILES_PER_PROCESS) // FILES_PER_MACHINE)
    needed = math.ceil(machines / fit) if fit > 0 else MAX_PROCESSES + 1
    if needed > MAX_PROCESSES:
        files = machines * FILES_PER_MACHINE + FILES_PER_PROCESS
        enough = min(machines, MACHINES_PER_PROCESS) * FILES_PER_MACHINE + FILES_PER_PROCESS
        suggest = math.ceil(enough / 1024) * 1024
        raise FleetTooLarge(
            f"{machines:,} machines need about {files:,} open files ({FILES_PER_MACHINE} per "
            "machine: its MQTT connection, its buffer and the buffer's log); a process may "
            f"open {open_files:,} here (hard limit {_limit(hard_limit)}): room for "
            f"{max(fit, 0):,} machines a process, and a fleet is split into at most "
            f"{MAX_PROCESSES} processes. Raise the limit: `ulimit -n {suggest}` in this shell "
            "(where the hard limit forbids it: `nofile` in /etc/security/limits.conf, "
            f"LimitNOFILE= for a systemd service, `--ulimit nofile={suggest}` for Docker), or "
            "simulate fewer machines"
        )
    if processes is not None and processes < needed:
        raise FleetTooLarge(
            f"--processes {processes}: {machines:,} machines need at least {needed} processes "
            f"here (a process may open {open_files:,} files, {FILES_PER_MACHINE} per machine, "
            f"and runs at most {MACHINES_PER_PROCESS:,} machines): use --processes {needed} or "
            "more, or leave it out"
        )
    per_process = math.ceil(machines / min(processes or needed, machines))
    return FleetPlan(machines, math.ceil(machines / per_process), open_files, hard_limit)


def _limit(value: int) -> str:
    return "unlimited" if value == resource.RLIM_INFINITY else f"{value:,}"


def limit_sqlite_heap(limit: int = SQLITE_HEAP_BYTES) -> None:
    """Cap the memory SQLite keeps in this process (page caches shrink under it)."""
    with contextlib.closing(sqlite3.connect(":memory:")) as db:
        db.execute(f"PRAGMA soft_heap_limit={int(limit)}")


def _freeze_heap() -> None:
    """Once the agents are up: leave what exists out of garbage collection. Thousands of
    agents and simulators are a large heap that never dies, and each full collection walked
    all of it (16 % of the CPU time of 2,000 machines before)."""
    gc.collect()
    gc.freeze()


def _usage() -> tuple[int, float]:
    """This process's peak RSS (bytes) and CPU seconds so far."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_maxrss * 1024, usage.ru_utime + usage.ru_stime


async def run_fleet_workers(
    settings: EdgeSettings,
    specs: Sequence[MachineSpec],
    plan: FleetPlan,
    *,
    start: datetime,
    end: datetime,
    speed: float | None,
    sample_interval_s: float = 10.0,
    ground_truth: Path | None = None,
    progress: bool = False,
    connect_timeout: float = 30.0,
    drain_timeout: float = 300.0,
    stop: asyncio.Event | None = None,
    broker_for: Callable[[MachineRef], Broker] | None = None,
    live: bool = False,
    caught_up: Callable[[FleetRun], None] | None = None,
) -> FleetRun:
    """``run_fleet`` for ``specs`` split as ``plan`` says (in this process when it is one),
    with the resources it took. ``broker_for`` must pickle (a module-level function or a
    ``functools.partial`` of one) to reach the worker processes. ``live`` (``run_fleet``)
    runs in one process only."""
    if plan.machines != len(specs):
        raise ValueError(f"the plan is for {plan.machines} machines, got {len(specs)}")
    if live and plan.processes > 1:
        raise FleetError(
            f"a live simulation runs in one process; {plan.machines:,} machines need "
            f"{plan.processes} here (fewer machines, or a higher open-files limit)"
        )
    limit_sqlite_heap()
    if plan.processes == 1:
        cpu0 = _usage()[1]

        async def ready() -> None:
            _freeze_heap()

        try:
            run = await run_fleet(
                settings, specs, start=start, end=end, speed=speed,
                sample_interval_s=sample_interval_s, ground_truth=ground_truth,
                progress=progress, connect_timeout=connect_timeout,
                drain_timeout=drain_timeout, stop=stop, broker_for=broker_for, ready=ready,
                live=live, caught_up=caught_up,
            )  # fmt: skip
        finally:
            gc.unfreeze()
        rss, cpu = _usage()
        return replace(run, resources=Resources(1, rss, cpu - cpu0))
    jobs = [
        _Job(
            index=index,
            settings=settings,
            specs=part,
            start=start,
            end=end,
            speed=speed,
            sample_interval_s=sample_interval_s,
            ground_truth=None if ground_truth is None else _part_file(ground_truth, index),
            connect_timeout=connect_timeout,
            drain_timeout=drain_timeout,
            broker_for=broker_for,
            log_level=logging.getLogger().level,
        )
        for index, part in enumerate(plan.slices(specs))
    ]
    wall0 = time.monotonic()
    parts = [job.ground_truth for job in jobs if job.ground_truth is not None]
    try:
        results = await _Workers(jobs).run(stop or asyncio.Event(), progress, start, end)
        if ground_truth is not None:  # one file, in the fleet's order, as one process writes it
            truths = [truth for part in parts for truth in read_ground_truth(part)]
            write_ground_truth(ground_truth, truths)
    finally:
        for part in parts:
            part.unlink(missing_ok=True)
    runs = [result.run for result in results]
    reached = min(run.end for run in runs)
    return FleetRun(
        machines=[machine for run in runs for machine in run.machines],
        start=start,
        end=reached,
        wall_seconds=time.monotonic() - wall0,
        ground_truth=ground_truth,
        interrupted=any(run.interrupted for run in runs),
        resources=Resources(
            len(runs),
            sum(result.peak_rss_bytes for result in results),
            sum(result.cpu_seconds for result in results),
        ),
    )


def _part_file(ground_truth: Path, index: int) -> Path:
    return ground_truth.with_name(f".{ground_truth.name}.part{index}")


@dataclass(frozen=True)
class _Job:
    """One worker's slice and how to run it (pickled to the worker)."""

    index: int
    settings: EdgeSettings
    specs: list[MachineSpec]
    start: datetime
    end: datetime
    speed: float | None
    sample_interval_s: float
    ground_truth: Path | None
    connect_timeout: float
    drain_timeout: float
    broker_for: Callable[[MachineRef], Broker] | None
    log_level: int


@dataclass(frozen=True)
class _Result:
    run: FleetRun
    peak_rss_bytes: int
    cpu_seconds: float


# The board: per worker, these slots of a shared array of doubles (exact up to 2**53).
_CONNECTED, _SIMULATED_S, _PRODUCED, _PUBLISHED, _READY, _SLOTS = range(6)


class _Workers:
    """The worker processes of one run, seen from the parent."""

    def __init__(self, jobs: list[_Job]) -> None:
        context = multiprocessing.get_context("spawn")  # no fork of a threaded process
        self.jobs = jobs
        self.board: Any = context.Array("d", _SLOTS * len(jobs), lock=False)
        self.stop: Event = context.Event()
        self.go: Event = context.Event()
        self.pipes = [context.Pipe(duplex=False) for _ in jobs]
        self.processes = [
            context.Process(
                target=_work,
                args=(job, sender, self.board, self.stop, self.go),
                name=f"runhours-fleet-{job.index}",
                daemon=True,
            )
            for job, (_, sender) in zip(jobs, self.pipes, strict=True)
        ]

    async def run(
        self, stop: asyncio.Event, progress: bool, start: datetime, end: datetime
    ) -> list[_Result]:
        results: dict[int, _Result] = {}
        errors: list[BaseException] = []
        machines = sum(len(job.specs) for job in self.jobs)
        for process in self.processes:
            process.start()
        for _, sender in self.pipes:
            sender.close()  # the workers hold theirs: a dead worker's pipe ends (EOFError)
        pending = {receiver: index for index, (receiver, _) in enumerate(self.pipes)}
        try:
            with FleetDisplay(progress, (end - start).total_seconds(), machines) as display:
                while pending:
                    for ready in wait(list(pending), timeout=0):
                        assert isinstance(ready, Connection)
                        index = pending.pop(ready)
                        outcome = self._receive(index, ready)
                        if isinstance(outcome, _Result):
                            results[index] = outcome
                        else:
                            errors.append(outcome)
                    if stop.is_set() or errors:
                        self.stop.set()
                    if errors or all(self._slot(i, _READY) for i in range(len(self.jobs))):
                        self.go.set()  # every agent connected (or it failed): start together
                    display.update(self._progress(machines))
                    if pending:
                        await asyncio.sleep(0.2)
        except BaseException:  # aborted (a second Ctrl-C cancels the run): end them now
            for process in self.processes:
                if process.is_alive():
                    process.terminate()  # SIGTERM: what is unpublished stays in the buffers
            raise
        finally:
            for process in self.processes:
                process.join(10)
                if process.is_alive():
                    process.kill()
                    process.join()
        if errors:
            raise errors[0]
        return [results[index] for index in range(len(self.jobs))]

    def _receive(self, index: int, receiver: Connection) -> _Result | BaseException:
        try:
            outcome: _Result | BaseException = receiver.recv()
        except (EOFError, OSError):
            code = self.processes[index].exitcode
            self.processes[index].join(5)
            code = self.processes[index].exitcode if code is None else code
            return FleetError(
                f"fleet worker {index} died (exit code {code}); its machines' unpublished "
                f"samples stay in their buffers under {self.jobs[index].settings.data_dir}"
            )
        finally:
            receiver.close()
        return outcome

    def _slot(self, index: int, slot: int) -> float:
        return float(self.board[index * _SLOTS + slot])

    def _progress(self, machines: int) -> FleetProgress:
        count = range(len(self.jobs))
        return FleetProgress(
            machines,
            int(sum(self._slot(i, _CONNECTED) for i in count)),
            min(self._slot(i, _SIMULATED_S) for i in count),
            int(sum(self._slot(i, _PRODUCED) for i in count)),
            int(sum(self._slot(i, _PUBLISHED) for i in count)),
        )


def _work(job: _Job, sender: Connection, board: Any, stop: Event, go: Event) -> None:
    """A worker process: run its slice, send back the run and what it cost."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the parent, which relays it
    logging.basicConfig(level=job.log_level, format="%(levelname)s %(name)s: %(message)s")
    limit_sqlite_heap()
    outcome: _Result | BaseException
    try:
        run = asyncio.run(_work_slice(job, board, stop, go))
        rss, cpu = _usage()
        outcome = _Result(run, rss, cpu)
    except Exception as exc:  # sent to the parent, which raises it
        if not isinstance(exc, FleetError | OSError | ValueError):
            log.exception("fleet worker %d failed", job.index)
        outcome = exc
    with contextlib.closing(sender):
        try:
            sender.send(outcome)
        except Exception:  # an exception that does not pickle: its text
            sender.send(FleetError(f"fleet worker {job.index}: {outcome}"))


async def _work_slice(job: _Job, board: Any, stop_flag: Event, go: Event) -> FleetRun:
    stop = asyncio.Event()
    base = job.index * _SLOTS

    def report(now: FleetProgress) -> None:
        board[base + _CONNECTED] = now.connected
        board[base + _SIMULATED_S] = now.simulated_s
        board[base + _PRODUCED] = now.produced
        board[base + _PUBLISHED] = now.published

    async def ready() -> None:
        _freeze_heap()
        board[base + _READY] = 1
        while not go.is_set():
            await asyncio.sleep(0.05)

    async def relay() -> None:
        while not stop_flag.is_set():
            await asyncio.sleep(0.2)
        stop.set()

    relaying = asyncio.create_task(relay())
    try:
        return await run_fleet(
            job.settings, job.specs, start=job.start, end=job.end, speed=job.speed,
            sample_interval_s=job.sample_interval_s, ground_truth=job.ground_truth,
            connect_timeout=job.connect_timeout, drain_timeout=job.drain_timeout, stop=stop,
            broker_for=job.broker_for, report=report, ready=ready,
        )  # fmt: skip
    finally:
        relaying.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await relaying


def describe(plan: FleetPlan) -> str:
    """``"2 processes of up to 5,000 machines (open files: 20,000 each)"`` or ``"1 process"``."""
    if plan.processes == 1:
        return "1 process"
    return (
        f"{plan.processes} processes of up to {plan.per_process:,} machines "
        f"(open files: {plan.open_files:,} each)"
    )
