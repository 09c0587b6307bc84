"""`runhours services up|down|status`: local Mosquitto + InfluxDB as plain processes."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from contract.settings import RunhoursSettings
from runhours.commands._common import ConfigOption, console, fail, load
from runhours.services import LocalServices, ServiceError

app = typer.Typer(
    help="Start, stop and inspect a local Mosquitto and InfluxDB (from the Debian packages), "
    "with configs from deploy/ and data under <data_dir>/services.",
    no_args_is_help=True,
)

MqttPort = Annotated[
    int | None, typer.Option(help="Mosquitto port (default: RUNHOURS_MQTT_URL's, 1883).")
]
InfluxPort = Annotated[
    int | None, typer.Option(help="InfluxDB HTTP port (default: RUNHOURS_INFLUX_URL's, 8086).")
]


def _services(config: Path | None, mqtt_port: int | None, influx_port: int | None) -> LocalServices:
    return LocalServices.from_settings(load(RunhoursSettings, config), mqtt_port, influx_port)


@app.command()
def up(
    config: ConfigOption = None, mqtt_port: MqttPort = None, influx_port: InfluxPort = None
) -> None:
    """Start both services (if not running) and wait until they answer."""
    pair = _services(config, mqtt_port, influx_port)
    try:
        pair.up()
    except ServiceError as exc:
        fail(str(exc))
    console.print(f"mosquitto  {pair.mqtt_url}\ninfluxdb   {pair.influx_url}")
    console.print(f"data, logs and pid files under {pair.state_dir}")


@app.command()
def down(
    config: ConfigOption = None, mqtt_port: MqttPort = None, influx_port: InfluxPort = None
) -> None:
    """Stop both services cleanly (SIGTERM, then SIGKILL after 20 s)."""
    _services(config, mqtt_port, influx_port).down()
    console.print("stopped")


@app.command()
def status(
    config: ConfigOption = None, mqtt_port: MqttPort = None, influx_port: InfluxPort = None
) -> None:
    """Show whether each service runs and answers; exit 1 if either does not."""
    pair = _services(config, mqtt_port, influx_port)
    table = Table("service", "pid", "port", "answers")
    healthy = True
    for service in pair.services:
        pid, ready = service.pid(), service.ready()
        healthy &= ready
        table.add_row(service.name, str(pid or "-"), str(service.port), "yes" if ready else "no")
    console.print(table)
    if not healthy:
        raise typer.Exit(1)
