"""`runhours simulate`: a simulated fleet through its edge agents to the broker."""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import signal
import sys
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Literal

import typer
from rich.table import Table

from contract import MachineRef
from edge.config import EdgeSettings, parse_speed
from edge.mqtt import Broker
from runhours.commands._common import ConfigOption, console, fail, load
from runhours.fleet import FleetRun, run_fleet
from simulators import WEAR_PROFILES, MachineSpec, fleet

if TYPE_CHECKING:
    from simulators.opcua_server import OpcuaSecurity

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
    credentials: Annotated[
        Path | None,
        typer.Option(
            help="Each machine logs in with its own identity from this folder (a security "
            "directory, or its edge/ folder: `runhours credentials add`); the broker's "
            "address and CA come from the settings.",
            file_okay=False,
        ),
    ] = None,
    serve: Annotated[
        Literal["modbus", "opcua"] | None,
        typer.Option(
            help="Instead of publishing, serve the machines over a real protocol until "
            "--days are simulated or Ctrl-C: 'modbus' (Modbus TCP, one unit id per machine, "
            "read-only registers) or 'opcua' (an OPC UA server); run `runhours edge` with "
            "the configs --edge-configs writes to read them. Default speed 1, start now."
        ),
    ] = None,
    host: Annotated[
        str, typer.Option(help="--serve: address to listen on (loopback unless secured).")
    ] = "127.0.0.1",
    port: Annotated[
        int | None, typer.Option(help="--serve: port (default 5020 Modbus, 4840 OPC UA).")
    ] = None,
    edge_configs: Annotated[
        Path | None,
        typer.Option(help="--serve: write one edge config per machine into this folder."),
    ] = None,
    opcua_user: Annotated[
        str | None,
        typer.Option(
            help="--serve opcua: accept only this user, over Basic256Sha256 SignAndEncrypt; "
            "password from RUNHOURS_SIMULATE_OPCUA_PASSWORD, with --opcua-cert/--opcua-key."
        ),
    ] = None,
    opcua_cert: Annotated[
        Path | None, typer.Option(help="--serve opcua: server certificate.")
    ] = None,
    opcua_key: Annotated[Path | None, typer.Option(help="--serve opcua: its private key.")] = None,
) -> None:
    """Simulate a fleet and publish it through edge agents (or serve it: --serve)."""
    settings = load(EdgeSettings, config)
    if serve is not None:
        _serve(settings, serve, machines, days, speed, seed, ground_truth, start, site,
               degrading, sample_interval, host, port, edge_configs,
               _opcua_security(opcua_user, opcua_cert, opcua_key))  # fmt: skip
        return
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
    broker_for = None
    if credentials is not None:
        from runhours.security.credentials import edge_dir_of, machine_broker

        folder = edge_dir_of(credentials)
        broker_for = functools.partial(machine_broker, folder, base=settings.broker)
    try:
        result = asyncio.run(
            _run(settings, specs, begin, end, factor, sample_interval, truth_file, show, broker_for)
        )
    except asyncio.CancelledError:
        fail("aborted: samples not yet published were left in the buffers", code=130)
    _report(result)
    if result.buffered:
        fail(
            f"{result.buffered} samples were not acknowledged by the broker in time; they stay "
            f"in the buffers under {settings.data_dir / 'edge'}",
            code=1,
        )


def _opcua_security(user: str | None, cert: Path | None, key: Path | None) -> OpcuaSecurity | None:
    if user is None and cert is None and key is None:
        return None
    password = os.environ.get("RUNHOURS_SIMULATE_OPCUA_PASSWORD")
    if user is None or cert is None or key is None or not password:
        fail(
            "--opcua-user, --opcua-cert, --opcua-key and RUNHOURS_SIMULATE_OPCUA_PASSWORD "
            "go together"
        )
    from simulators.opcua_server import OpcuaSecurity  # asyncua: imported only when used

    return OpcuaSecurity(cert, key, user, password)


def _serve(
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
    begin = datetime.now(UTC).replace(microsecond=0) if start is None else _parse_start(start, days)
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
    begin: datetime,
    end: datetime,
    speed: float | None,
    sample_interval: float,
    truth_file: Path,
    progress: bool,
    broker_for: Callable[[MachineRef], Broker] | None = None,
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
        broker_for=broker_for,
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
