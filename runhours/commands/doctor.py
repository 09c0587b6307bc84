"""`runhours doctor`: check that a running deployment can keep its delivery promises."""

from __future__ import annotations

from typing import Annotated

import typer

from runhours.commands._common import ConfigOption, console, fail, load
from runhours.commands._tables import Col, fit_table

app = typer.Typer()

STYLE = {"ok": "green", "warn": "yellow", "fail": "bold red"}


@app.callback(invoke_without_command=True)
def doctor(
    burst: Annotated[
        int,
        typer.Option(
            "--burst",
            help="Probe the broker's queue with this many QoS 1 messages to an offline "
            "session (topics runhours/v1/probe/…); 0 skips the probe.",
        ),
    ] = 5000,
    since: Annotated[
        str, typer.Option("--since", help="Look for lost data this far back: '24h', '7d'.")
    ] = "24h",
    config: ConfigOption = None,
) -> None:
    """Check the broker, the ingest and InfluxDB with the configured settings: is InfluxDB
    answering, is an ingest worker online (edge agents hold their telemetry otherwise), has
    the broker dropped messages, does its queue keep a burst for an offline session (a
    queue limit would drop data in an outage), and was anything lost recently. Exit code
    1 on any warning or failure."""
    from common.settings import RunhoursSettings
    from common.times import TimeError, parse_duration
    from runhours.doctor import run_checks

    settings = load(RunhoursSettings, config)
    try:
        window = parse_duration(since)
    except TimeError as exc:
        fail(f"--since: {exc}")
    if burst < 0:
        fail("--burst must be 0 or more")
    checks = run_checks(settings, burst, window)
    rows = [
        [check.name, f"[{STYLE[check.status]}]{check.status}[/]", check.detail] for check in checks
    ]
    cols = [Col("check"), Col("status"), Col("detail", figure=False)]
    console.print(fit_table(console, cols, rows))
    if any(check.status != "ok" for check in checks):
        raise typer.Exit(1)
