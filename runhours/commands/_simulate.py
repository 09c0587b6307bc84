"""`runhours simulate`'s runs and their report: publish through edge agents, or serve."""

from __future__ import annotations

import asyncio
import functools
import logging
import signal
import sys
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from edge.config import EdgeSettings, parse_speed
from edge.mqtt import Broker
from runhours.commands._common import console, fail
from runhours.commands._tables import Col, fit_table
from runhours.fleet import FleetError, FleetRun, MachineRun
from runhours.fleet_workers import (
    FleetPlan,
    describe,
    plan_fleet,
    raise_open_files_limit,
    run_fleet_workers,
)
from simulators import WEAR_PROFILES, MachineSpec, fleet
from wire import MachineRef

if TYPE_CHECKING:
    from simulators.opcua_server import OpcuaSecurity

ROWS = 20  # a fleet up to this size gets a row per machine; a larger one its worst only


def parse_start(value: str | None, days: float) -> datetime:
    """--start as an aware UTC time; without it, ``days`` before today's midnight (UTC)."""
    if value is None:  # the simulated period ends at today's midnight (UTC)
        today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
        return today - timedelta(days=days)
    try:
        start = datetime.fromisoformat(value)
    except ValueError:
        fail(f"--start: {value!r} is not a date (YYYY-MM-DD) or an RFC 3339 time")
    if start.tzinfo is None:
        if len(value) > 10:
            fail(f"--start: {value!r} has no time zone (add Z or +01:00, or give a date)")
        start = start.replace(tzinfo=UTC)  # a plain date: midnight UTC
    return start.astimezone(UTC)


def simulate_fleet(
    settings: EdgeSettings,
    *,
    machines: int,
    days: float,
    begin: datetime | None,
    speed: str,
    factor: float | None,
    seed: int,
    site: str | None,
    degrading: int,
    profiles: str,
    plant: Path | None,
    processes: int | None,
    sample_interval: float,
    ground_truth: Path | None,
    progress: bool | None,
    credentials: Path | None,
    live: bool,
) -> None:
    """Simulate ``machines`` from ``begin`` (None: a live run's kept start) for ``days``, or
    with ``live`` up to now and on, and publish them through one edge agent per machine in
    as many processes as the open-files limit needs; then report what was published."""
    the_site = site or settings.edge.site
    if begin is None:
        begin = _live_start(settings.data_dir, machines, seed, the_site, days)
        end = datetime.now(UTC)
    else:
        end = begin + timedelta(days=days)
    truth_file = ground_truth or settings.data_dir / "ground-truth.json"
    wear = WEAR_PROFILES if profiles.strip() == "all" else profiles.split(",")
    try:
        specs = fleet(
            machines,
            seed=seed,
            start=begin,
            site=the_site,
            degrading=degrading,
            profiles=[p.strip() for p in wear],  # type: ignore[misc]
        )
    except ValueError as exc:
        fail(f"--profiles: {exc}" if "profiles" in str(exc) else str(exc))
    if plant is not None:
        from analytics.plant import PlantError, load_plant
        from runhours.fleet import follow_plant

        try:
            specs = follow_plant(specs, load_plant(plant))
        except PlantError as exc:
            fail(str(exc))
    try:
        plan = plan_fleet(machines, *raise_open_files_limit(), processes=processes)
    except FleetError as exc:
        fail(str(exc))
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    console.print(
        f"simulating {machines:,} machines in {describe(plan)}, {begin:%Y-%m-%d %H:%M} → "
        f"{end:%Y-%m-%d %H:%M} UTC, speed {speed}, seed {seed} → {settings.broker.url}"
    )
    show = sys.stdout.isatty() if progress is None else progress
    broker_for = None
    if credentials is not None:
        from runhours.security.credentials import edge_dir_of, machine_broker

        folder = edge_dir_of(credentials)
        broker_for = functools.partial(machine_broker, folder, base=settings.broker)
    try:
        result = asyncio.run(
            _run(
                settings, specs, plan, begin, end, factor, sample_interval, truth_file,
                show, broker_for, live,
            )
        )  # fmt: skip
    except asyncio.CancelledError:
        fail("aborted: samples not yet published were left in the buffers", code=130)
    _report(result)
    if result.buffered:
        fail(
            f"{result.buffered} samples were not acknowledged by the broker in time; they stay "
            f"in the buffers under {settings.data_dir / 'edge'}",
            code=1,
        )


def serve_simulation(
    settings: EdgeSettings,
    protocol: Literal["modbus", "opcua"],
    machines: int,
    days: float,
    speed: str,
    seed: int,
    ground_truth: Path | None,
    start: str | None,
    site: str | None,
    degrading: int,
    sample_interval: float,
    host: str,
    port: int | None,
    edge_configs: Path | None,
    security: OpcuaSecurity | None,
) -> None:
    """Serve the simulated machines over Modbus TCP or OPC UA until --days are simulated
    or Ctrl-C; with ``edge_configs``, first write one edge config per machine there."""
    from runhours.serving import DEFAULT_PORT, serve_fleet, write_edge_configs  # pymodbus, asyncua

    loopback = host in ("127.0.0.1", "::1", "localhost")
    if not loopback and (protocol == "modbus" or security is None):
        fail(
            f"--host {host}: Modbus TCP has no authentication and an unsecured OPC UA server "
            "none either; the simulator listens beyond loopback only as an OPC UA server with "
            "--opcua-user (signed and encrypted)"
        )
    try:
        factor = parse_speed("1" if speed == "max" else speed)
    except ValueError as exc:
        fail(f"--speed: {exc}")
    assert factor is not None
    begin = datetime.now(UTC).replace(microsecond=0) if start is None else parse_start(start, days)
    specs = fleet(
        machines, seed=seed, start=begin, site=site or settings.edge.site, degrading=degrading
    )
    port = port or DEFAULT_PORT[protocol]
    truth_file = ground_truth or settings.data_dir / "ground-truth.json"
    if edge_configs is not None:
        written = write_edge_configs(protocol, specs, host, port, edge_configs)
        console.print(f"wrote {len(written)} edge configs to {edge_configs}")
    where = f"modbus://{host}:{port} (unit ids 1-{machines})" if protocol == "modbus" else (
        f"opc.tcp://{host}:{port}/"
    )  # fmt: skip
    console.print(
        f"serving {machines} simulated machines on {where} from {begin:%Y-%m-%d %H:%M:%S} UTC, "
        f"speed {factor:g} (Ctrl-C to stop); ground truth: {truth_file}"
    )

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await serve_fleet(
            protocol, specs, begin, speed=factor, host=host, port=port,
            until=begin + timedelta(days=days), sample_interval_s=sample_interval,
            ground_truth=truth_file, security=security, stop=stop,
        )  # fmt: skip

    try:
        asyncio.run(main())
    except OSError as exc:
        fail(f"cannot serve on {host}:{port}: {exc.strerror or exc}")
    console.print(f"stopped; ground truth written to {truth_file}")


async def _run(
    settings: EdgeSettings,
    specs: list[MachineSpec],
    plan: FleetPlan,
    begin: datetime,
    end: datetime,
    speed: float | None,
    sample_interval: float,
    truth_file: Path,
    progress: bool,
    broker_for: Callable[[MachineRef], Broker] | None = None,
    live: bool = False,
) -> FleetRun:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    main = asyncio.current_task()

    def on_signal() -> None:
        # First Ctrl-C/SIGTERM: stop simulating, still publish what exists. Second: abort.
        if stop.is_set() and main is not None:
            main.cancel()
            return
        stop.set()
        console.print("stopping: publishing what was simulated (Ctrl-C again to abort)")

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, on_signal)
    return await run_fleet_workers(
        settings,
        specs,
        plan,
        start=begin,
        end=end,
        speed=speed,
        sample_interval_s=sample_interval,
        ground_truth=truth_file,
        progress=progress,
        stop=stop,
        broker_for=broker_for,
        live=live,
        caught_up=_caught_up if live else None,
    )


def _caught_up(run: FleetRun) -> None:
    console.print(
        f"caught up with now: {run.published:,} samples published in {run.wall_seconds:.1f} s; "
        "running live (SIGTERM or Ctrl-C stops)",
        highlight=False,
    )


def _live_start(data_dir: Path, machines: int, seed: int, site: str, days: float) -> datetime:
    """The start of a live simulation: the one kept for the same fleet, else today's
    midnight (UTC) less ``days``, kept for the next run."""
    import json

    path = data_dir / "simulate-live.json"
    fleet_id = {"machines": machines, "seed": seed, "site": site, "days": days}
    try:
        kept = json.loads(path.read_text())
        if {k: kept.get(k) for k in fleet_id} == fleet_id:
            return datetime.fromisoformat(kept["start"]).astimezone(UTC)
    except (OSError, ValueError, KeyError, TypeError):
        pass
    today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    begin = today - timedelta(days=days)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({**fleet_id, "start": begin.isoformat()}) + "\n")
    return begin


def _report(result: FleetRun) -> None:
    """Every machine's row for a small fleet; for a large one, totals per kind and the
    machines with samples dropped or left in their buffers (the worst first)."""
    figures = [
        Col("produced", right=True),
        Col("published", right=True),
        Col("dropped", right=True),
        Col("buffered", right=True),
    ]
    cols = [Col("machine"), Col("kind", drop=2), Col("line", drop=1), *figures]
    if len(result.machines) <= ROWS:
        rows = [[m.spec.machine, m.spec.kind, m.spec.line, *_figures([m])] for m in result.machines]
        rows.append(["total", "", "", *_figures(result.machines)])
        console.print(fit_table(console, cols, rows, sections=[len(rows) - 1]))
    else:
        kinds = []
        for kind in sorted({m.spec.kind for m in result.machines}):
            of_kind = [m for m in result.machines if m.spec.kind == kind]
            kinds.append([kind, f"{len(of_kind):,}", *_figures(of_kind)])
        kinds.append(["total", f"{len(result.machines):,}", *_figures(result.machines)])
        by_kind = [Col("kind"), Col("machines", right=True), *figures]
        console.print(fit_table(console, by_kind, kinds, sections=[len(kinds) - 1]))
        worst = sorted(
            (m for m in result.machines if m.dropped or m.buffered),
            key=lambda m: (m.dropped + m.buffered, m.spec.machine),
            reverse=True,
        )
        if worst:
            rows = [
                [m.spec.machine, m.spec.kind, m.spec.line, *_figures([m])] for m in worst[:ROWS]
            ]
            console.print(fit_table(console, cols, rows, title="the worst machines"))
            if len(worst) > ROWS:
                console.print(f"… and {len(worst) - ROWS:,} more machines with samples not sent")
        else:
            console.print("every machine: every sample acknowledged, none dropped")
    rate = result.published / result.wall_seconds if result.wall_seconds else 0.0
    if result.interrupted:
        console.print(f"interrupted at {result.end:%Y-%m-%d %H:%M} UTC")
    console.print(
        f"{result.published:,} samples published in {result.wall_seconds:.1f} s "
        f"({rate:,.0f} samples/s); ground truth: {result.ground_truth}"
    )
    if (used := result.resources) is not None:
        per_machine = used.peak_rss_bytes / len(result.machines)
        console.print(
            f"simulator: {used.processes} process{'es' if used.processes > 1 else ''}, "
            f"peak RSS {used.peak_rss_bytes / 2**20:,.0f} MiB ({per_machine / 1024:,.0f} KiB "
            f"per machine), CPU {used.cpu_seconds:,.1f} s"
        )


def _figures(machines: list[MachineRun]) -> tuple[str, str, str, str]:
    return (
        f"{sum(m.produced for m in machines):,}",
        f"{sum(m.published for m in machines):,}",
        f"{sum(m.dropped for m in machines):,}",
        f"{sum(m.buffered for m in machines):,}",
    )
