"""`runhours services up|down|status`: local Mosquitto + InfluxDB as plain processes."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from common.settings import RunhoursSettings
from runhours.commands._common import ConfigOption, console, load
from runhours.commands._tables import Col, fit_table
from runhours.services import LocalServices

app = typer.Typer(
    help="Start, stop and inspect a local Mosquitto and InfluxDB (from the Debian packages), "
    "with configs from deploy/ and data under <data_dir>/services. Open by default (anyone "
    "on this host may connect: tests, the quick demo); --secure adds TLS, a login for "
    "everyone, one broker identity per machine and least-privilege InfluxDB users "
    "(docs/security.md).",
    no_args_is_help=True,
)

MqttPort = Annotated[
    int | None,
    typer.Option(
        help="Mosquitto port (default: RUNHOURS_MQTT_URL's, 1883; with --secure 8883, TLS)."
    ),
]
InfluxPort = Annotated[
    int | None, typer.Option(help="InfluxDB HTTP port (default: RUNHOURS_INFLUX_URL's, 8086).")
]
MtlsPort = Annotated[
    int | None,
    typer.Option(help="With --secure: the client-certificate (mutual TLS) port; default MQTT+1."),
]


def _services(
    config: Path | None,
    mqtt_port: int | None,
    influx_port: int | None,
    secure: bool | None = None,
    mtls_port: int | None = None,
) -> LocalServices:
    settings = load(RunhoursSettings, config)
    return LocalServices.from_settings(
        settings, mqtt_port, influx_port, secure=secure, mtls_port=mtls_port
    )


@app.command()
def up(
    config: ConfigOption = None,
    mqtt_port: MqttPort = None,
    influx_port: InfluxPort = None,
    secure: Annotated[
        bool,
        typer.Option(
            "--secure",
            help="TLS-only broker with a login for everyone and the per-machine ACL, InfluxDB "
            "with authentication; creates <data_dir>/security (CA, certificates, generated "
            "passwords in files of mode 0600, one settings file per service).",
        ),
    ] = False,
    mtls_port: MtlsPort = None,
) -> None:
    """Start both services (if not running) and wait until they answer."""
    pair = _services(config, mqtt_port, influx_port, secure, mtls_port)
    created = pair.up()
    for line in created:
        console.print(f"created {line}", markup=False, highlight=False)
    if pair.security is None:
        console.print(f"mosquitto  {pair.mqtt_url}\ninfluxdb   {pair.influx_url}")
        console.print(f"data, logs and pid files under {pair.state_dir}")
        return
    security = pair.security
    console.print(
        f"mosquitto  {pair.mqtt_url} (TLS, password), {pair.mtls_url} (client certificate)\n"
        f"influxdb   {pair.influx_url} (authentication on)\n"
        f"data, logs and pid files under {pair.state_dir}; identities and secrets under "
        f"{security.root}",
        highlight=False,
    )
    rows = [
        [role, str(security.role_file(role)), f"{command} --config {security.role_file(role)}"]
        for role, command in (
            ("ingest", "runhours ingest"),
            ("analytics", "runhours analytics --http-port 8080"),
            ("grafana", "runhours dashboards check"),
        )
    ]
    cols = [Col("role"), Col("settings (mode 0600)", figure=False), Col("run", figure=False)]
    console.print(fit_table(console, cols, rows, title="one settings file per service"))
    console.print(
        "machines: runhours credentials add --machine SITE/LINE/MACHINE; console users: "
        f"runhours users add NAME --role operator (operator admin: password in "
        f"{security.secrets_file} [console])",
        markup=False,
        highlight=False,
    )


@app.command()
def down(
    config: ConfigOption = None, mqtt_port: MqttPort = None, influx_port: InfluxPort = None
) -> None:
    """Stop both services cleanly (SIGTERM, then SIGKILL after 20 s), open or secure; a
    `runhours demo` still running on them is stopped first."""
    pair = _services(config, mqtt_port, influx_port)
    if pair.stop_demo():
        console.print("stopped the running demo")
    pair.down()
    console.print("stopped")


@app.command()
def status(
    config: ConfigOption = None, mqtt_port: MqttPort = None, influx_port: InfluxPort = None
) -> None:
    """Show whether each service runs and answers; exit 1 if either does not."""
    pair = _services(config, mqtt_port, influx_port)
    rows = []
    healthy = True
    for service in pair.services:
        pid, ready = service.pid(), service.ready()
        healthy &= ready
        rows.append([service.name, str(pid or "-"), str(service.port), "yes" if ready else "no"])
    if (demo := pair.demo_pid()) is not None:
        rows.append(["demo (live)", str(demo), "", "yes"])
    cols = [Col("service"), Col("pid", right=True), Col("port", right=True), Col("answers")]
    console.print(fit_table(console, cols, rows))
    if not healthy:
        raise typer.Exit(1)
