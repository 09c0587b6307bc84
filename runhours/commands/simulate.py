"""`runhours simulate`: a simulated fleet through its edge agents to the broker."""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from edge.buffer import EdgeBufferError
from edge.config import EdgeSettings, parse_speed
from runhours.commands._common import ConfigOption, console, fail, load
from runhours.fleet import FleetError, FleetRun, run_fleet
from simulators import WEAR_PROFILES, MachineSpec, fleet

app = typer.Typer(
    help="Simulate a fleet of machines (CNC mills, pumps, compressors; one wearing out a "
    "bearing) and publish their telemetry through one edge agent per machine, like real "
    "edge devices: on-disk buffer, QoS 1, retained status. Writes the ground truth (true "
    "seconds per state per hour, degradation onset and failure) to a JSON file. Reads the "
    "shared settings (RUNHOURS_MQTT_URL, RUNHOURS_DATA_DIR, \\[edge] batching).",
)


def _parse_start(value: str | None, days: float) -> datetime:
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


@app.callback(invoke_without_command=True)
def simulate(
    machines: Annotated[int, typer.Option(min=1, max=10_000, help="Fleet size.")] = 12,
    days: Annotated[float, typer.Option(min=0.001, help="Simulated days.")] = 1.0,
    speed: Annotated[
        str, typer.Option(help="'max' (as fast as publishing allows) or a factor, 1 = real time.")
    ] = "max",
    seed: Annotated[int, typer.Option(help="Random seed: same seed, same machines.")] = 1,
    ground_truth: Annotated[
        Path | None,
        typer.Option(help="Ground-truth JSON file (default: <data_dir>/ground-truth.json)."),
    ] = None,
    config: ConfigOption = None,
    start: Annotated[
        str | None,
        typer.Option(
            help="Simulated start: YYYY-MM-DD (midnight UTC) or RFC 3339 with zone "
            "(default: so that the period ends today at 00:00 UTC)."
        ),
    ] = None,
    site: Annotated[str | None, typer.Option(help="Site id (default: edge.site).")] = None,
    degrading: Annotated[
        int, typer.Option(min=0, help="How many machines wear out a bearing.")
    ] = 1,
    sample_interval: Annotated[
        float, typer.Option(min=0.001, help="Seconds between samples of a machine.")
    ] = 10.0,
    profiles: Annotated[
        str,
        typer.Option(
            help="Wear profiles the degrading machines draw from, comma-separated: "
            f"{', '.join(WEAR_PROFILES)}, or 'all' (simulators/README.md).",
        ),
    ] = "accelerating",
    progress: Annotated[
        bool | None, typer.Option(help="Progress bars (default: on a terminal).")
    ] = None,
) -> None:
    """Simulate a fleet and publish it through edge agents."""
    settings = load(EdgeSettings, config)
    try:
        factor = parse_speed(speed)
    except ValueError as exc:
        fail(f"--speed: {exc}")
    begin = _parse_start(start, days)
    end = begin + timedelta(days=days)
    truth_file = ground_truth or settings.data_dir / "ground-truth.json"
    wear = WEAR_PROFILES if profiles.strip() == "all" else profiles.split(",")
    try:
        specs = fleet(
            machines,
            seed=seed,
            start=begin,
            site=site or settings.edge.site,
            degrading=degrading,
            profiles=[p.strip() for p in wear],  # type: ignore[misc]
        )
    except ValueError as exc:
        fail(f"--profiles: {exc}" if "profiles" in str(exc) else str(exc))
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    console.print(
        f"simulating {machines} machines, {begin:%Y-%m-%d %H:%M} → {end:%Y-%m-%d %H:%M} UTC, "
        f"speed {speed}, seed {seed} → {settings.broker.url}"
    )
    show = sys.stdout.isatty() if progress is None else progress
    try:
        result = asyncio.run(
            _run(settings, specs, begin, end, factor, sample_interval, truth_file, show)
        )
    except (FleetError, EdgeBufferError) as exc:
        fail(str(exc))
    except asyncio.CancelledError:
        fail("aborted: samples not yet published were left in the buffers", code=130)
    _report(result)
    if result.buffered:
        fail(
            f"{result.buffered} samples were not acknowledged by the broker in time; they stay "
            f"in the buffers under {settings.data_dir / 'edge'}",
            code=1,
        )


async def _run(
    settings: EdgeSettings,
    specs: list[MachineSpec],
    begin: datetime,
    end: datetime,
    speed: float | None,
    sample_interval: float,
    truth_file: Path,
    progress: bool,
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
    return await run_fleet(
        settings,
        specs,
        start=begin,
        end=end,
        speed=speed,
        sample_interval_s=sample_interval,
        ground_truth=truth_file,
        progress=progress,
        stop=stop,
    )


def _report(result: FleetRun) -> None:
    table = Table("machine", "kind", "line", "produced", "published", "dropped", "buffered")
    for m in result.machines:
        table.add_row(
            m.spec.machine,
            m.spec.kind,
            m.spec.line,
            str(m.produced),
            str(m.published),
            str(m.dropped),
            str(m.buffered),
        )
    table.add_section()
    table.add_row(
        "total",
        "",
        "",
        str(result.produced),
        str(result.published),
        str(result.dropped),
        str(result.buffered),
    )
    console.print(table)
    rate = result.published / result.wall_seconds if result.wall_seconds else 0.0
    if result.interrupted:
        console.print(f"interrupted at {result.end:%Y-%m-%d %H:%M} UTC")
    console.print(
        f"{result.published} samples published in {result.wall_seconds:.1f} s "
        f"({rate:,.0f} samples/s); ground truth: {result.ground_truth}"
    )
