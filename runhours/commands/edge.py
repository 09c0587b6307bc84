"""`runhours edge`: one edge agent, until SIGTERM or Ctrl-C."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime
from typing import Annotated

import typer

from common.settings import SettingsError
from edge import Reading
from edge.buffer import SampleBuffer
from edge.config import CsvSource, EdgeSettings, SimulatorSource
from edge.modbus_map import ModbusSource
from edge.opcua_config import OpcuaSource
from edge.service import SourceFactory, csv_factory, modbus_factory, opcua_factory, serve
from runhours.commands._common import ConfigOption, console, fail, load
from runhours.fleet import simulator_source
from simulators import MACHINE_KINDS, MachineSim, MachineSpec, SimClock

app = typer.Typer(
    help="Run one edge agent: read a source (a simulated machine, a CSV replay, a Modbus TCP "
    "device or an OPC UA server), buffer "
    "every sample on disk, publish telemetry to MQTT (QoS 1) and replay the backlog after "
    "outages and restarts. Runs until SIGTERM or Ctrl-C, then publishes what it can and "
    "goes offline cleanly. Settings: the \\[edge] section of the --config file (see edge/example.toml), "
    "overridden by RUNHOURS_* variables (e.g. RUNHOURS_MQTT_URL, RUNHOURS_EDGE__MACHINE).",
)


def _simulator_factory(settings: EdgeSettings, options: SimulatorSource) -> SourceFactory:
    if options.kind not in MACHINE_KINDS:
        raise SettingsError(
            f"edge.source.kind: unknown machine kind {options.kind!r} "
            f"(choose one of {', '.join(MACHINE_KINDS)})"
        )
    site, line, machine = settings.edge.ref
    spec = MachineSpec(machine, options.kind, site, line, seed=options.seed)

    def make(_buffer: SampleBuffer) -> AsyncIterator[Sequence[Reading]]:
        # A live machine: it starts now; after a restart it simply continues from now.
        start = datetime.now(UTC)
        sim = MachineSim(spec, start, sample_interval_s=options.sample_interval)
        return simulator_source(sim, SimClock(start, options.speed))

    return make


@app.callback(invoke_without_command=True)
def edge(
    config: ConfigOption = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log every connect.")] = False,
) -> None:
    """Run one edge agent until SIGTERM or Ctrl-C.

    With a CSV source and `until_end = true` it exits by itself once the whole file is
    published and acknowledged (exit code 0; 1 if a signal stopped it first with samples
    still buffered).
    """
    settings = load(EdgeSettings, config)
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    source = settings.edge.source
    until_end = isinstance(source, CsvSource) and source.until_end
    live = isinstance(source, ModbusSource | OpcuaSource)
    if isinstance(source, CsvSource):
        factory = csv_factory(source)
    elif isinstance(source, ModbusSource):
        factory = modbus_factory(source)
    elif isinstance(source, OpcuaSource):
        factory = opcua_factory(source)
    else:
        factory = _simulator_factory(settings, source)
    ref = "/".join(settings.edge.ref)
    until = "the end of the file" if until_end else "Ctrl-C"
    console.print(f"edge agent {ref} → {settings.broker.url} (until {until})")
    stats = asyncio.run(serve(settings, factory, live=live, until_end=until_end))
    console.print(
        f"stopped: {stats.submitted} samples taken, {stats.published} published, "
        f"{stats.dropped} dropped, {stats.buffered} still buffered"
    )
    if until_end and stats.buffered:
        fail(f"stopped before the end: {stats.buffered} samples still buffered", code=1)
