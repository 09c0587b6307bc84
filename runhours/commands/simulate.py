"""`runhours simulate`: a simulated fleet through its edge agents to the broker."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Literal

import typer

from edge.config import EdgeSettings, parse_speed
from runhours.commands._common import ConfigOption, fail, load
from runhours.commands._simulate import parse_start, serve_simulation, simulate_fleet
from simulators import WEAR_PROFILES

if TYPE_CHECKING:
    from simulators.opcua_server import OpcuaSecurity

MAX_MACHINES = 10_000

app = typer.Typer(
    help="Simulate a fleet of machines (CNC mills, pumps, compressors; one wearing out a "
    "bearing) and publish their telemetry through one edge agent per machine, like real "
    "edge devices: on-disk buffer, QoS 1, retained status. Writes the ground truth (true "
    "seconds per state per hour, degradation onset and failure) to a JSON file. Reads the "
    "shared settings (RUNHOURS_MQTT_URL, RUNHOURS_DATA_DIR, \\[edge] batching). Up to "
    "10,000 machines: a large fleet is split across processes as the open-files limit "
    "requires (3 files per machine): simulators/README.md, docs/performance.md.",
)


@app.callback(invoke_without_command=True)
def simulate(
    machines: Annotated[
        int, typer.Option(min=1, max=MAX_MACHINES, help="Fleet size (at most 10,000).")
    ] = 12,
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
    processes: Annotated[
        int | None,
        typer.Option(
            min=1,
            help="Worker processes, each running its share of the machines' edge agents "
            "(default: as few as the open-files limit allows, 3 files per machine, at most "
            "5,000 machines each).",
        ),
    ] = None,
    live: Annotated[
        bool,
        typer.Option(
            "--live",
            help="Simulate --days up to now, then keep running in real time until SIGTERM or "
            "Ctrl-C. The start is kept in <data_dir>/simulate-live.json, so a restart "
            "re-simulates the same plant (identical points) instead of another one.",
        ),
    ] = False,
    plant: Annotated[
        Path | None,
        typer.Option(
            help="Plant-floor file: the machines work its shift schedules (breaks, holidays) "
            "and make parts at its ideal cycles (docs/oee.md).",
            dir_okay=False,
        ),
    ] = None,
) -> None:
    """Simulate a fleet and publish it through edge agents (or serve it: --serve)."""
    settings = load(EdgeSettings, config)
    if serve is not None:
        serve_simulation(settings, serve, machines, days, speed, seed, ground_truth, start,
                         site, degrading, sample_interval, host, port, edge_configs,
                         _opcua_security(opcua_user, opcua_cert, opcua_key))  # fmt: skip
        return
    try:
        factor = parse_speed(speed)
    except ValueError as exc:
        fail(f"--speed: {exc}")
    simulate_fleet(
        settings,
        machines=machines,
        days=days,
        begin=None if live and start is None else parse_start(start, days),
        speed=speed,
        factor=factor,
        seed=seed,
        site=site,
        degrading=degrading,
        profiles=profiles,
        plant=plant,
        processes=processes,
        sample_interval=sample_interval,
        ground_truth=ground_truth,
        progress=progress,
        credentials=credentials,
        live=live,
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
