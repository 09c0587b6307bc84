"""`runhours simulate --serve`: the simulated fleet behind real protocol servers, and the
edge configs that read it (the shipped examples are rendered here and checked by a test).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Literal

from simulators import MachineSpec
from simulators.live import LiveFleet
from simulators.modbus_server import register_map, start_modbus_server
from simulators.opcua_server import OpcuaSecurity, opcua_nodes, start_opcua_server
from simulators.truth import write_ground_truth

Protocol = Literal["modbus", "opcua"]
DEFAULT_PORT: dict[Protocol, int] = {"modbus": 5020, "opcua": 4840}
STATE_CODES = '{ "0" = "off", "1" = "idle", "2" = "running", "3" = "fault", "4" = "maintenance" }'


def _edge_head(spec: MachineSpec, what: str) -> str:
    return (
        f"# runhours edge agent reading {what}\n"
        "# Run: runhours edge --config <this file>   (every other key: edge/example.toml)\n"
        'mqtt_url = "mqtt://localhost:1883"\n\n'
        "[edge]\n"
        f'site = "{spec.site}"\nline = "{spec.line}"\nmachine = "{spec.machine}"\n\n'
    )


def modbus_edge_config(spec: MachineSpec, unit: int, host: str, port: int) -> str:
    """The edge config that reads machine ``spec`` (unit id ``unit``) of the Modbus server."""
    registers = register_map(spec.kind)
    lines = [
        _edge_head(spec, f"simulated {spec.kind} {spec.machine} over Modbus TCP"),
        "[edge.source]\n",
        'type = "modbus"\n',
        f'host = "{host}"\nport = {port}\n',
        f"unit = {unit}                # the machine's unit id behind the gateway\n",
        "poll_interval = 1.0     # s\n",
        "timeout = 1.0           # s per request\n\n",
        "# The device's clock: uint64 epoch milliseconds in registers 0-3.\n",
        '[edge.source.timestamp]\naddress = 0\ntype = "uint64"\nscale = 0.001\n\n',
        "# The state code in register 4.\n",
        f'[edge.source.state]\naddress = 4\ntype = "uint16"\nmap = {STATE_CODES}\n\n',
        "# The hour meter: whole seconds of running, uint32 in registers 5-6 (rolls over at\n",
        "# 2^32 s; the agent counts rollovers).\n",
        '[edge.source.hour_meter]\naddress = 5\ntype = "uint32"\nscale = 1.0\n',
    ]
    for register in registers:
        if register.name in ("timestamp", "state", "hour_meter"):
            continue
        lines.append(
            "\n[[edge.source.values]]\n"
            f'name = "{register.name}"\naddress = {register.address}\n'
            f'type = "{register.type}"      # big-endian bytes and words (ABCD)\n'
            'table = "holding"\n'
        )
    return "".join(lines)


def opcua_edge_config(spec: MachineSpec, url: str) -> str:
    """The edge config that subscribes to machine ``spec`` on the OPC UA server."""
    nodes = opcua_nodes(spec.machine, spec.kind)
    lines = [
        _edge_head(spec, f"simulated {spec.kind} {spec.machine} over OPC UA"),
        "[edge.source]\n",
        'type = "opcua"\n',
        f'url = "{url}"\n',
        'mode = "subscribe"      # data-change subscriptions; "poll" reads every interval\n',
        "interval = 1.0          # s: publishing interval\n",
        'security = "None"       # e.g. "Basic256Sha256,SignAndEncrypt" (needs certificate)\n',
        '# username = "edge"     # password: RUNHOURS_EDGE__SOURCE__PASSWORD\n\n',
        f'[edge.source.state]\nnode = "{nodes.pop("State")}"\n\n',
        "# OPC UA DI's OperationDuration: a Duration in milliseconds.\n",
        f'[edge.source.hour_meter]\nnode = "{nodes.pop("OperationDuration")}"\nscale = 0.001\n',
    ]
    for name, node in nodes.items():
        lines.append(f'\n[[edge.source.values]]\nname = "{name}"\nnode = "{node}"\n')
    return "".join(lines)


def write_edge_configs(
    protocol: Protocol, specs: Sequence[MachineSpec], host: str, port: int, folder: Path
) -> list[Path]:
    """One edge config per machine, ``<folder>/<machine>.toml``."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for unit, spec in enumerate(specs, start=1):
        if protocol == "modbus":
            text = modbus_edge_config(spec, unit, host, port)
        else:
            text = opcua_edge_config(spec, f"opc.tcp://{host}:{port}/")
        path = folder / f"{spec.machine}.toml"
        path.write_text(text, encoding="utf-8")
        paths.append(path)
    return paths


async def serve_fleet(
    protocol: Protocol,
    specs: Sequence[MachineSpec],
    start: datetime,
    *,
    speed: float,
    host: str,
    port: int,
    until: datetime | None,
    sample_interval_s: float,
    ground_truth: Path | None,
    security: OpcuaSecurity | None = None,
    ready: asyncio.Event | None = None,
    stop: asyncio.Event | None = None,
) -> LiveFleet:
    """Serve the fleet until ``until`` (or ``stop``); write the ground truth at the end."""
    live = LiveFleet(specs, start, speed=speed, sample_interval_s=sample_interval_s)
    stop = stop or asyncio.Event()
    opcua = None
    if protocol == "modbus":
        modbus = await start_modbus_server(live, host, port)
    else:
        opcua = await start_opcua_server(live, host, port, security)
    if ready is not None:
        ready.set()
    stepping = asyncio.create_task(live.run(until, None if opcua is None else opcua.on_readings))
    stopped = asyncio.create_task(stop.wait())
    try:
        await asyncio.wait({stepping, stopped}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        stepping.cancel()
        stopped.cancel()
        await asyncio.gather(stepping, stopped, return_exceptions=True)
        if opcua is None:
            await modbus.shutdown()  # type: ignore[no-untyped-call]
        else:
            await opcua.stop()
        if ground_truth is not None:
            write_ground_truth(ground_truth, live.truth)
    return live
